"""Search indexes as assets: search/bm25_index and search/market_embeddings."""
