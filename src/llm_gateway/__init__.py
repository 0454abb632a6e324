"""llm-gateway: an OpenAI- and Anthropic-compatible LLM gateway."""

import os

__version__ = "0.1.0"

# granian's Rust side allocates from its own jemalloc, which reads this variable once, when granian loads; this
# package is imported before it. By default jemalloc keeps freed pages for 10 s and purges them only while it
# allocates, so after a burst of connections an idle gateway kept ~20 MiB it no longer used. A background thread
# now returns them within about a second of going unused (no measurable CPU per request: bench/README.md).
# An operator's own setting stands.
JEMALLOC_CONF = "background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0"
os.environ.setdefault("_RJEM_MALLOC_CONF", JEMALLOC_CONF)
