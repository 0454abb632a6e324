"""Which client headers an OpenAI-compatible upstream gets: the account headers only with the client's own key."""

from __future__ import annotations

from llm_gateway.providers.base import CHAT, UpstreamCall
from llm_gateway.providers.registry import build_provider
from llm_gateway.settings import ProviderConfig

CLIENT = {"openai-organization": "org-client", "openai-project": "proj_client", "openai-beta": "assistants=v2"}


def sent_headers(client_auth: str | None) -> dict[str, str]:
    provider = build_provider(ProviderConfig(name="p", type="openai", base_url="http://up:1/v1", api_key="sk-up"))
    call = UpstreamCall(endpoint=CHAT, body={"model": "m", "messages": []}, model="m", stream=False,
                        client_wants_usage=False, client_auth=client_auth, client_headers=CLIENT)
    return dict(provider.prepare(call).headers)


def test_a_virtual_key_holder_does_not_choose_the_account() -> None:
    headers = sent_headers(None)  # keys in use: the client's credentials never go upstream
    assert "openai-organization" not in headers and "openai-project" not in headers
    assert headers["openai-beta"] == "assistants=v2"


def test_keyless_mode_forwards_them_as_genai_gateway_did() -> None:
    headers = sent_headers("Bearer sk-client")
    assert (headers["openai-organization"], headers["openai-project"]) == ("org-client", "proj_client")
