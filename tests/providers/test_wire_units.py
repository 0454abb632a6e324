"""The pieces under the adapters: SigV4 (AWS test vectors), event-stream framing, the usage table, presets."""

from __future__ import annotations

import struct
from typing import Any

import orjson
import pytest

from llm_gateway.app import create_app
from llm_gateway.providers.bedrock.eventstream import CorruptStream, EventStreamReader
from llm_gateway.providers.bedrock.response import ConverseStreamDecoder
from llm_gateway.providers.bedrock.sigv4 import Credentials, Signer, canonical_path
from llm_gateway.providers.openai_compat.presets import PRESETS
from llm_gateway.providers.usage_map import USAGE_FIELDS, usage_from
from llm_gateway.settings import parse_config
from tests.providers.case import FIXTURES
from tests.providers.eventstream_writer import encode, message


def test_sigv4_get_vanilla_from_the_aws_test_suite() -> None:
    signer = Signer(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "us-east-1", "service")
    auth = signer.authorization("GET", "/", "", {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"},
                                b"", "20150830T123600Z")
    assert auth == ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                    "SignedHeaders=host;x-amz-date, "
                    "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")


def test_sigv4_s3_get_object_example_from_the_aws_docs() -> None:
    signer = Signer(Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), "us-east-1", "s3")
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    headers = {"host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9", "x-amz-content-sha256": empty,
               "x-amz-date": "20130524T000000Z"}
    auth = signer.authorization("GET", "/test.txt", "", headers, b"", "20130524T000000Z")
    assert auth.endswith("Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date" in auth


def test_sigv4_canonical_path_encodes_the_wire_path_again() -> None:
    assert canonical_path("/model/anthropic.claude-v2%3A1/converse") == "/model/anthropic.claude-v2%253A1/converse"


@pytest.mark.parametrize("name", ["stream_text", "stream_tool_use", "stream_throttled"])
def test_event_stream_fixtures_match_their_descriptions(name: str) -> None:
    events = orjson.loads((FIXTURES / "bedrock" / f"{name}.events.json").read_bytes())
    assert (FIXTURES / "bedrock" / f"{name}.bin").read_bytes() == encode(events)


def test_event_stream_reader_byte_by_byte() -> None:
    data = (FIXTURES / "bedrock" / "stream_tool_use.bin").read_bytes()
    reader = EventStreamReader()
    got: list[tuple[dict[str, object], bytes]] = []
    for i in range(len(data)):
        got += reader.feed(data[i:i + 1])
    assert [h[":event-type"] for h, _ in got] == [
        "messageStart", "contentBlockDelta", "contentBlockStop", "contentBlockStart", "contentBlockDelta",
        "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]
    assert orjson.loads(got[3][1])["start"]["toolUse"]["name"] == "get_weather"
    assert reader.pending == 0


def test_event_stream_crc_checks() -> None:
    good = message({":event-type": "messageStart"}, b'{"role":"assistant"}')
    bad_payload = good[:-6] + b"X" + good[-5:]
    with pytest.raises(CorruptStream, match="message CRC"):
        EventStreamReader().feed(bad_payload)
    bad_prelude = struct.pack(">I", len(good) + 1) + good[4:]
    with pytest.raises(CorruptStream, match="prelude CRC"):
        EventStreamReader().feed(bad_prelude)


def test_converse_stream_cut_mid_message_is_an_error() -> None:
    data = (FIXTURES / "bedrock" / "stream_text.bin").read_bytes()
    decoder = ConverseStreamDecoder("m", False, "chatcmpl-1")
    decoder.feed(data[:200])
    with pytest.raises(CorruptStream.__mro__[1]):  # UpstreamUnavailable: the client gets an error event
        decoder.finish()


@pytest.mark.parametrize(("table", "raw", "want"), [
    ("anthropic", {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5,
                   "output_tokens": 7}, (115, 7, 100, 5, 0)),
    ("bedrock", {"inputTokens": 10, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 5, "outputTokens": 7},
     (115, 7, 100, 5, 0)),
    ("gemini", {"promptTokenCount": 110, "cachedContentTokenCount": 100, "candidatesTokenCount": 7,
                "thoughtsTokenCount": 20}, (110, 27, 100, 0, 20)),
    ("openai", {"prompt_tokens": 110, "completion_tokens": 27, "prompt_tokens_details": {"cached_tokens": 100},
                "completion_tokens_details": {"reasoning_tokens": 20}}, (110, 27, 100, 0, 20)),
])
def test_usage_table(table: str, raw: dict[str, Any], want: tuple[int, ...]) -> None:
    u = usage_from(table, raw)
    assert (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_write_tokens, u.reasoning_tokens) == want


def test_usage_table_covers_every_translating_provider() -> None:
    assert {"anthropic", "gemini", "bedrock", "openai"} <= set(USAGE_FIELDS)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_by_option_and_by_type(preset: str) -> None:
    config = parse_config({"providers": [
        {"name": "a", "type": "openai-compatible", "options": {"preset": preset}, "api_key": "k", "models": ["m"]},
        {"name": "b", "type": preset, "api_key": "k", "models": ["n"]}]})
    assert config.providers[1].type == "openai-compatible" and config.providers[1].options == {"preset": preset}
    gateway = create_app(config)
    for name in ("a", "b"):
        provider: Any = gateway.providers[name]
        origin = f"{provider.origin.scheme}://{provider.origin.host_header}{provider.base_path}"
        assert origin == PRESETS[preset].base_url.replace(":443", "")
        assert provider._auth == (None if PRESETS[preset].auth == "none" else "Bearer k")


def test_unknown_preset_is_a_config_error() -> None:
    config = parse_config({"providers": [{"name": "a", "type": "openai-compatible", "options": {"preset": "nope"}}]})
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        create_app(config)
