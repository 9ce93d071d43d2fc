"""OpenAI-compatible gateway: validation, auth, proxying to engines, request records."""
