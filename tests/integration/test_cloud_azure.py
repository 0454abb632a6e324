"""Azure OpenAI with `auth: entra` through the real gateway: tokens from azure-identity (a client secret;
AKS workload identity), sent as bearer tokens instead of `api-key`, and a secret Entra refuses.

Entra's side is tests/clouds/azure.py on loopback over TLS (azure-identity takes only `https://` authorities),
reached through azure-identity's own settings: `authority_host` / `AZURE_AUTHORITY_HOST` and the test CA in
`REQUESTS_CA_BUNDLE`. Azure OpenAI itself is the same fake on plain HTTP.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import trustme
from tests.clouds.azure import (
    CLIENT_ID,
    CLIENT_SECRET,
    FEDERATED_TOKEN,
    IDENTITY_HEADER,
    TENANT,
    AzureCloud,
    make_app,
)
from tests.clouds.thread import AppThread
from tests.conftest import GatewayProcess, launch


@dataclass
class Servers:
    cloud: AzureCloud
    entra: AppThread  # TLS
    openai: AppThread  # plain HTTP
    ca: trustme.CA


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    cloud = AzureCloud()
    entra = AppThread(make_app(cloud), context).start()
    plain = AppThread(make_app(cloud)).start()
    cloud.url = entra.url
    yield Servers(cloud, entra, plain, ca)
    entra.stop()
    plain.stop()


@pytest.fixture(scope="module")
def gateway(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("azure")
    servers.ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    (tmp / "federated-token").write_text(FEDERATED_TOKEN)
    azure = {"type": "azure", "base_url": servers.openai.url, "auth": "entra"}
    secret = {"tenant_id": TENANT, "client_id": CLIENT_ID, "authority_host": servers.entra.url,
              "disable_instance_discovery": True}
    config = {"providers": [
        {**azure, "name": "az-secret", "options": {**secret, "client_secret": CLIENT_SECRET},
         "models": [{"name": "gpt-4o-secret", "model": "dep-secret"}]},
        {**azure, "name": "az-workload", "options": {"disable_instance_discovery": True},
         "models": [{"name": "gpt-4o-workload", "model": "dep-workload"}]},
        {**azure, "name": "az-refused", "options": {**secret, "client_secret": "not-the-secret"},
         "models": [{"name": "gpt-4o-refused", "model": "dep-refused"}]},
    ]}
    env = {"REQUESTS_CA_BUNDLE": str(tmp / "ca.pem"),  # azure-identity's HTTP client trusts the test CA
           # AKS workload identity: the webhook sets these in the pod
           "AZURE_FEDERATED_TOKEN_FILE": str(tmp / "federated-token"), "AZURE_CLIENT_ID": CLIENT_ID,
           "AZURE_TENANT_ID": TENANT, "AZURE_AUTHORITY_HOST": servers.entra.url}
    gw = launch([], tmp, env=env, config=config)
    yield gw
    gw.stop()


def test_client_secret(gateway: GatewayProcess, servers: Servers) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key="the-clients-own-key", max_retries=0)
    out = client.chat.completions.create(model="gpt-4o-secret", messages=[{"role": "user", "content": "Hi"}])
    assert out.choices[0].message.content == "Hello from dep-secret"
    call = servers.cloud.openai_calls[-1]
    # a token Entra issued for the client secret, as a bearer token: no api-key, not the client's own key
    assert call["ok"] and call["how"] == "client-secret"
    assert call["path"] == "/openai/deployments/dep-secret/chat/completions?api-version=2024-10-21"
    granted = [c for c in servers.cloud.token_calls if c["how"] == "client-secret"]
    assert granted and granted[0]["scope"] == "https://cognitiveservices.azure.com/.default"
    assert granted[0]["grant_type"] == "client_credentials" and granted[0]["tenant"] == TENANT


def test_workload_identity(gateway: GatewayProcess, servers: Servers) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)
    out = client.chat.completions.create(model="gpt-4o-workload", messages=[{"role": "user", "content": "Hi"}])
    assert out.choices[0].message.content == "Hello from dep-workload"
    assert servers.cloud.openai_calls[-1]["how"] == "workload-identity"  # the federated token was the assertion


def test_refused_secret(gateway: GatewayProcess, servers: Servers) -> None:
    ready = httpx.get(f"{gateway.url}/ready")
    assert ready.status_code == 503
    providers = ready.json()["providers"]
    assert providers["az-refused"].startswith("credentials unavailable: Microsoft Entra ID token: "
                                              "ClientAuthenticationError")
    assert providers["az-secret"] == "reachable" and providers["az-workload"] == "reachable"
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="gpt-4o-refused", messages=[{"role": "user", "content": "Hi"}])
    assert err.value.status_code == 502
    assert not any(c["path"].startswith("/openai/deployments/dep-refused") for c in servers.cloud.openai_calls)
    log = gateway.log()
    assert "az-refused: cannot obtain Microsoft Entra ID token (ClientAuthenticationError" in log
    assert CLIENT_SECRET not in log and "not-the-secret" not in log and FEDERATED_TOKEN not in log
    assert not any(token in log for token in servers.cloud.tokens)


def test_managed_identity(servers: Servers, tmp_path: Path) -> None:
    """App Service / Container Apps style: the platform's IDENTITY_ENDPOINT and IDENTITY_HEADER, no secret."""
    config = {"providers": [{"type": "azure", "base_url": servers.openai.url, "auth": "entra", "name": "az-mi",
                             "models": [{"name": "gpt-4o-mi", "model": "dep-mi"}]}]}
    env = {"IDENTITY_ENDPOINT": f"{servers.openai.url}/msi/token", "IDENTITY_HEADER": IDENTITY_HEADER}
    gw = launch([], tmp_path, env=env, config=config)
    try:
        client = openai.OpenAI(base_url=gw.v1, api_key="unused", max_retries=0)
        out = client.chat.completions.create(model="gpt-4o-mi", messages=[{"role": "user", "content": "Hi"}])
        assert out.choices[0].message.content == "Hello from dep-mi"
        assert servers.cloud.openai_calls[-1]["how"] == "managed-identity"
        assert IDENTITY_HEADER not in gw.log()
    finally:
        gw.stop()
