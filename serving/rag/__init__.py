"""Document index and retrieval: chunking, embeddings, a persistent Chroma collection, BM25, hybrid fusion."""
