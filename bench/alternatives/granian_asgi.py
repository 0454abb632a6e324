"""Variant (h): granian (ASGI interface, uvloop) + the raw ASGI app of the uvicorn variants + our HttpClient."""

from uvicorn_ours import app  # noqa: F401  (granian imports `granian_asgi:app`)
