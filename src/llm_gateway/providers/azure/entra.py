"""Microsoft Entra ID tokens for Azure OpenAI, through azure-identity (the `azure` extra).

With `options.tenant_id`, `client_id` and `client_secret`: a client secret. Otherwise azure-identity's default
chain without its developer tools: the environment (`AZURE_CLIENT_SECRET`, `AZURE_CLIENT_CERTIFICATE_PATH`),
workload identity (AKS: `AZURE_FEDERATED_TOKEN_FILE`), then managed identity (`IDENTITY_ENDPOINT` or IMDS).
`options.authority_host` (or `AZURE_AUTHORITY_HOST`) picks the cloud; `options.disable_instance_discovery: true`
for an authority Microsoft's instance discovery does not know (Azure Stack, a private one). Imported only when
`auth: entra` is set.
"""

from __future__ import annotations

import logging
from typing import Any

from azure.identity import ClientSecretCredential, DefaultAzureCredential

from llm_gateway.providers.credentials import Issued

SCOPE = "https://cognitiveservices.azure.com/.default"
# azure-core logs every token request and response at info level: the gateway logs what matters itself
HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


def credential_from(options: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    if options.get("authority_host"):
        kwargs["authority"] = str(options["authority_host"])
    if options.get("disable_instance_discovery"):
        kwargs["disable_instance_discovery"] = True
    tenant, client, secret = options.get("tenant_id"), options.get("client_id"), options.get("client_secret")
    if tenant and client and secret:
        return ClientSecretCredential(str(tenant), str(client), str(secret), **kwargs)
    if client:  # the user-assigned identity to use
        kwargs["managed_identity_client_id"] = kwargs["workload_identity_client_id"] = str(client)
    if tenant:
        kwargs["workload_identity_tenant_id"] = str(tenant)
    return DefaultAzureCredential(exclude_cli_credential=True, exclude_developer_cli_credential=True,
                                  exclude_powershell_credential=True, exclude_visual_studio_code_credential=True,
                                  exclude_shared_token_cache_credential=True,
                                  exclude_interactive_browser_credential=True, **kwargs)


class EntraTokens:
    """A fetch for providers.credentials.Refresher: an access token for Azure AI services, as a header value."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.scope = str(options.get("scope") or SCOPE)
        self._credential: Any = None
        if logging.getLogger(HTTP_LOGGER).level == logging.NOTSET:
            logging.getLogger(HTTP_LOGGER).setLevel(logging.WARNING)

    def __call__(self) -> Issued[str]:
        if self._credential is None:
            self._credential = credential_from(self.options)
        token = self._credential.get_token(self.scope)
        return Issued(f"Bearer {token.token}", float(token.expires_on))
