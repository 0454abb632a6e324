"""Which proxy a provider's requests take: its own `proxy`, or the environment's with NO_PROXY."""

from __future__ import annotations

import pytest

from llm_gateway.providers.egress import proxy_for
from llm_gateway.providers.wire import Origin
from llm_gateway.settings import ProviderConfig

HTTPS = Origin("https", "api.example.com", 443)


def config(**extra: object) -> ProviderConfig:
    return ProviderConfig.model_validate({"name": "p", "type": "openai", **extra})


@pytest.mark.parametrize(("no_proxy", "bypassed"), [
    ("", False), ("*", True), ("example.com", True), (".example.com", True), ("api.example.com:443", True),
    ("other.com, example.com", True), ("ample.com", False), ("api.example.com.evil", False), ("EXAMPLE.COM", True),
])
def test_no_proxy_names_hosts_and_domains(no_proxy: str, bypassed: bool) -> None:
    env = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy}
    assert proxy_for(config(), HTTPS, env) == (None if bypassed else "http://proxy:3128")


def test_the_scheme_picks_the_variable_and_the_provider_setting_wins() -> None:
    env = {"https_proxy": "proxy-s:3128", "http_proxy": "http://proxy-p:3128"}
    assert proxy_for(config(), HTTPS, env) == "http://proxy-s:3128"  # host:port alone, as curl takes it
    assert proxy_for(config(), Origin("http", "h", 80), env) == "http://proxy-p:3128"
    assert proxy_for(config(proxy="https://mine:8443"), HTTPS, env) == "https://mine:8443"
    assert proxy_for(config(proxy="none"), HTTPS, env) is None
    assert proxy_for(config(), HTTPS, {}) is None
