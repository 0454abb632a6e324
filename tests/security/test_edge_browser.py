"""A real browser (Debian's chromium driven by playwright) on a page from another origin `fetch`es a streamed chat
completion through the gateway with CORS on, and reads the text as it streams in; from an origin that is not
allowed, the browser refuses to hand the answer to the page."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import GatewayProcess
from tests.security.edge_wire import MASTER_KEY, edge_config
from tests.upstream import Upstream

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")

PAGE = b"""<!doctype html><html><body><pre id="out"></pre><script>
async function chat(base, key, model) {
  const out = document.getElementById("out");
  const reads = [];
  const resp = await fetch(base + "/v1/chat/completions", {
    method: "POST",
    headers: {"content-type": "application/json", "authorization": "Bearer " + key},
    body: JSON.stringify({model: model, stream: true, messages: [{role: "user", content: "hi"}]}),
  });
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    reads.push(performance.now());
    pending += decoder.decode(value, {stream: true});
    const events = pending.split("\\n\\n");
    pending = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const delta = JSON.parse(data).choices[0]?.delta?.content;
      if (delta) out.textContent += delta;
    }
  }
  return {status: resp.status, requestId: resp.headers.get("x-request-id"), reads: reads};
}
</script></body></html>"""


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_origin() -> Iterator[str]:
    """A tiny HTTP server on its own port: the page's origin differs from the gateway's."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def run_in_page(origin: str, gateway: str, model: str) -> tuple[Any, str]:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await page.goto(f"{origin}/")
            try:
                result = await page.evaluate("([b, k, m]) => chat(b, k, m)", [gateway, MASTER_KEY, model])
            except playwright_api.Error as exc:
                result = exc
            return result, await page.text_content("#out") or ""
        finally:
            await browser.close()


async def test_a_page_on_another_origin_reads_a_streamed_completion(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, page_origin: str) -> None:
    gw = gateway_factory(config=edge_config(upstream, cors={"enabled": True, "allowed_origins": [page_origin]}))
    result, text = await run_in_page(page_origin, gw.url, "slow-150")
    assert not isinstance(result, Exception), result
    assert result["status"] == 200 and result["requestId"]  # an exposed header is readable by the page
    assert text == "The quick brown fox jumps", text
    reads = result["reads"]
    # Streamed: the page got the text in several reads spread over the upstream's pace (150 ms a chunk).
    assert len(reads) >= 3 and reads[-1] - reads[0] >= 300, json.dumps(reads)


async def test_a_page_from_an_origin_not_allowed_gets_nothing(
        gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, page_origin: str) -> None:
    gw = gateway_factory(config=edge_config(upstream, cors={"enabled": True,
                                                            "allowed_origins": ["http://app.example"]}))
    result, text = await run_in_page(page_origin, gw.url, "up/m")
    assert isinstance(result, Exception) and "Failed to fetch" in str(result), result
    assert text == ""
