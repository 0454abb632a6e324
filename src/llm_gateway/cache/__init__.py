"""Response caching: exact-match (memory or Redis) and semantic (embeddings), with request coalescing."""
