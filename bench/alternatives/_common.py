"""What every pass-through proxy variant shares: ports from the environment and the upstream request head."""

import os

PORT = int(os.environ.get("PORT", "18100"))
UPSTREAM_PORT = int(os.environ.get("UPSTREAM_PORT", "18000"))
UPSTREAM_URL = f"http://127.0.0.1:{UPSTREAM_PORT}/v1/chat/completions"
PATH = "/v1/chat/completions"


def request(body: bytes):  # type: ignore[no-untyped-def]
    """The upstream request for llm_gateway.providers.http.HttpClient.send (it adds Host and Content-Length)."""
    from llm_gateway.providers.wire import PreparedRequest

    return PreparedRequest("POST", PATH, [("content-type", "application/json")], body)
