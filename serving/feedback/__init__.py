"""POST /v1/feedback: thumbs, edits, regenerations and annotator choices about logged requests."""
