"""Egress: which transport carries a provider's requests (direct, through a proxy, with its own TLS settings)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from llm_gateway.providers.transport import Transport
from llm_gateway.providers.wire import Origin
from llm_gateway.settings import ProviderConfig


def proxy_for(config: ProviderConfig, origin: Origin, environ: Mapping[str, str]) -> str | None:
    """The provider's `proxy`, else HTTPS_PROXY / HTTP_PROXY (by the upstream's scheme) unless NO_PROXY names it."""
    if config.proxy == "none":
        return None
    if config.proxy:
        return config.proxy
    env = {k.lower(): v for k, v in environ.items() if k.lower().endswith("_proxy") and v}
    url = env.get(f"{origin.scheme}_proxy")
    if not url:
        return None
    if _bypassed(origin.host, env.get("no_proxy", "")):
        return None
    return url if "://" in url else f"http://{url}"  # `host:port` alone, as curl takes it


def _bypassed(host: str, no_proxy: str) -> bool:
    """NO_PROXY as curl reads it: `*`, or names that match the host or a domain it is in (`example.com` and
    `.example.com` both match `api.example.com`); a `:port` on an entry is ignored."""
    host = host.lower().strip("[]")
    for entry in no_proxy.lower().split(","):
        entry = entry.strip()
        if entry.startswith("[") and "]" in entry:
            entry = entry[1:entry.index("]")]
        elif entry.count(":") == 1:
            entry = entry.split(":", 1)[0]
        entry = entry.lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


def ssl_context_for(config: ProviderConfig) -> ssl.SSLContext | None:
    """A context with the provider's own CAs and client certificate; None: the system's defaults."""
    if config.ca_file is None and config.client_cert is None:
        return None
    context = ssl.create_default_context(cafile=config.ca_file)
    if config.client_cert is not None:
        context.load_cert_chain(config.client_cert, config.client_key)
    return context


def transport_for(config: ProviderConfig, origin: Origin, environ: Mapping[str, str]) -> Transport | None:
    """The library transport for a provider behind a proxy or with its own TLS; None: the shared fast client."""
    proxy = proxy_for(config, origin, environ)
    context = ssl_context_for(config)
    if proxy is None and context is None:
        return None
    # Imported here, not at the top: aiohttp costs every gateway process ~9 MiB, and most never need it.
    from llm_gateway.providers.library_transport import LibraryTransport  # noqa: PLC0415

    return LibraryTransport(proxy, context)
