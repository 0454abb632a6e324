"""SSE splitting, the pass-through decoder's usage handling, the Prometheus exposition and its merge."""

from __future__ import annotations

import orjson

from llm_gateway.providers.openai_compat.adapter import PassthroughDecoder
from llm_gateway.providers.sse import EventSplitter
from llm_gateway.telemetry.metrics import Registry, merge


def test_splitter_handles_events_across_chunks_and_crlf() -> None:
    s = EventSplitter()
    assert s.feed(b"data: a\r") == []
    assert s.feed(b"\n\r\ndata: b\n") == [b"data: a"]
    assert s.feed(b"\ndata: [DONE]\n\n") == [b"data: b", b"data: [DONE]"]
    assert s.rest() == b""


def chunk(**kw: object) -> bytes:
    return b"data: " + orjson.dumps({"object": "chat.completion.chunk", **kw}) + b"\n\n"


def test_decoder_strips_unrequested_usage_chunk_byte_for_byte() -> None:
    a = chunk(choices=[{"index": 0, "delta": {"content": "hi"}}], usage=None)
    u = chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
    d = PassthroughDecoder(strip_usage_chunk=True)
    stream = a + u + b"data: [DONE]\n\n"
    out = d.feed(stream[:7]) + d.feed(stream[7:]) + d.finish()
    # the `"usage": null` the gateway's include_usage made the upstream add goes too (issue 20)
    assert out == chunk(choices=[{"index": 0, "delta": {"content": "hi"}}]) + b"data: [DONE]\n\n"
    assert d.usage is not None and d.usage.total_tokens == 4
    keep = PassthroughDecoder(strip_usage_chunk=False)
    assert keep.feed(stream) == stream


def test_decoder_strips_null_usage_in_any_spacing() -> None:
    spaced = b'data: {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}], "usage": null}\n\n'
    d = PassthroughDecoder(strip_usage_chunk=True)
    assert d.feed(spaced) == b'data: {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
    assert PassthroughDecoder(strip_usage_chunk=False).feed(spaced) == spaced  # the client asked: kept


def test_decoder_collects_text_for_local_counting() -> None:
    d = PassthroughDecoder(strip_usage_chunk=True)
    d.feed(chunk(choices=[{"index": 0, "delta": {"content": "Hel"}}]) +
           chunk(choices=[{"index": 0, "delta": {"tool_calls": [{"function": {"arguments": "{}"}}]}}]))
    assert d.usage is None
    assert d.completion_texts() == ["Hel", "{}"]


def test_registry_renders_prometheus_text() -> None:
    r = Registry()
    c = r.counter("tokens_total", "Tokens", ["model"])
    c.inc(("gpt-4o",), 5)
    c.inc(("gpt-4o",), 2)
    c.inc(('we"ird',))
    h = r.histogram("lat_seconds", "Latency", buckets=(0.1, 1.0))
    h.observe(0.05)
    h.observe(5.0)
    text = r.render().decode()
    assert 'tokens_total{model="gpt-4o"} 7' in text
    assert 'tokens_total{model="we\\"ird"} 1' in text
    assert 'lat_seconds_bucket{le="0.1"} 1' in text
    assert 'lat_seconds_bucket{le="1"} 1' in text
    assert 'lat_seconds_bucket{le="+Inf"} 2' in text
    assert "lat_seconds_count 2" in text and "lat_seconds_sum 5.05" in text


def worker_registry(requests: int, latency: float, in_flight: float, minis: int = 0) -> Registry:
    r = Registry()
    counter = r.counter("requests_total", "Requests", ["model", "note"])
    counter.inc(("gpt-4o", "a b"), requests)
    if minis:
        counter.inc(("mini", "x"), minis)
    r.gauge("in_flight", "In flight").set(in_flight)
    r.histogram("lat_seconds", "Latency", buckets=(0.1, 1.0)).observe(latency)
    return r


def test_merge_adds_every_series_up_and_keeps_families_whole() -> None:
    first = worker_registry(3, 0.05, 2)
    second = worker_registry(4, 5.0, 1, minis=2)
    text = merge([first.render(), second.render()]).decode()
    assert 'requests_total{model="gpt-4o",note="a b"} 7' in text
    assert 'requests_total{model="mini",note="x"} 2' in text  # a series only one worker has
    assert "in_flight 3" in text
    assert 'lat_seconds_bucket{le="0.1"} 1' in text and 'lat_seconds_bucket{le="+Inf"} 2' in text
    assert "lat_seconds_sum 5.05" in text and "lat_seconds_count 2" in text
    lines = text.splitlines()
    assert lines.count("# TYPE requests_total counter") == 1 and lines.count("# HELP in_flight In flight") == 1
    # each family is one block under its own TYPE line: what the exposition format asks for
    owner = ""
    for line in lines:
        if line.startswith("# TYPE "):
            owner = line.split()[2]
        elif not line.startswith("#"):
            assert line.startswith(owner)
    assert merge([first.render()]) == first.render()  # one process: its exposition as it is
