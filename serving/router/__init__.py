"""Intent routing: classify each chat request, then retrieve + answer, chat, or refuse (a LangGraph graph)."""
