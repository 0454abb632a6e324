"""A fast mock OpenAI upstream for the benchmark (aiohttp + uvloop + orjson).

POST /v1/chat/completions answers a fixed completion with usage, or an SSE stream of CHUNKS content chunks
(plus a usage chunk when `stream_options.include_usage`). Knobs (env): MOCK_LATENCY_MS before the answer / first
chunk, MOCK_CHUNK_DELAY_MS between chunks, MOCK_CHUNKS (20). The model "paced" streams its chunks
MOCK_PACED_DELAY_MS (1) apart whatever MOCK_CHUNK_DELAY_MS says, as a real model's tokens come, so that the mock
leaves its core between chunks. GET /stats returns the request count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import orjson
import uvloop
from aiohttp import web

LATENCY = float(os.environ.get("MOCK_LATENCY_MS", "0")) / 1000
CHUNK_DELAY = float(os.environ.get("MOCK_CHUNK_DELAY_MS", "0")) / 1000
CHUNKS = int(os.environ.get("MOCK_CHUNKS", "20"))
PACED_DELAY = float(os.environ.get("MOCK_PACED_DELAY_MS", "1")) / 1000
TEXT = ("The quick brown fox jumps over the lazy dog while a gateway relays tokens from a mock upstream "
        "so that we can measure its overhead").split()
USAGE = {"prompt_tokens": 25, "completion_tokens": 40, "total_tokens": 65}
counter = {"requests": 0}


async def chat(request: web.Request) -> web.StreamResponse:
    counter["requests"] += 1
    body = orjson.loads(await request.read())
    model = body.get("model", "mock")
    if LATENCY:
        await asyncio.sleep(LATENCY)
    base = {"id": "chatcmpl-bench", "created": int(time.time()), "model": model}
    if not body.get("stream"):
        return web.Response(body=orjson.dumps({
            **base, "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(TEXT[:40])},
                         "finish_reason": "stop"}], "usage": USAGE}), content_type="application/json")
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    chunk = {**base, "object": "chat.completion.chunk"}
    pause = PACED_DELAY if model == "paced" else CHUNK_DELAY
    await resp.write(b"data: " + orjson.dumps({**chunk, "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}) + b"\n\n")
    for i in range(CHUNKS):
        if pause:
            await asyncio.sleep(pause)
        await resp.write(b"data: " + orjson.dumps({**chunk, "choices": [
            {"index": 0, "delta": {"content": " " + TEXT[i % len(TEXT)]}, "finish_reason": None}]}) + b"\n\n")
    await resp.write(b"data: " + orjson.dumps({**chunk, "choices": [
        {"index": 0, "delta": {}, "finish_reason": "stop"}]}) + b"\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(b"data: " + orjson.dumps({**chunk, "choices": [], "usage": USAGE}) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def stats(request: web.Request) -> web.Response:
    return web.json_response(counter)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=18000)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stats", stats)
    app.router.add_get("/health", health)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
