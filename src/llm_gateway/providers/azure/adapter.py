"""The `azure` provider type: OpenAI wire bodies sent to Azure OpenAI deployments with an `api-key` header, or
with Microsoft Entra ID tokens (`auth: entra`, providers/azure/entra.py) refreshed in the background.

The deployment is the model name the provider knows (`models: [{name: gpt-4o, model: my-gpt4o-deployment}]`),
the path is `/openai/deployments/{deployment}/{endpoint}?api-version=...`.
"""

from __future__ import annotations

import importlib

from llm_gateway.errors import NotFound
from llm_gateway.providers.base import PreparedRequest, UpstreamCall
from llm_gateway.providers.credentials import Refresher
from llm_gateway.providers.openai_compat.adapter import CANONICAL, OpenAICompatibleProvider
from llm_gateway.providers.wire import path_segment
from llm_gateway.settings import ProviderConfig

API_VERSION = "2024-10-21"


class AzureProvider(OpenAICompatibleProvider):
    type = "azure"
    price_catalog = "azure"
    prices_by_public_name = True  # `models: [{name: gpt-4o, model: my-deployment}]`
    auth_modes = ("api_key", "entra")

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.passthrough = False
        self.api_version = str(config.options.get("api_version", API_VERSION))
        self._auth = None  # Azure takes the key in `api-key`; an Entra token may still come as Authorization
        if config.auth == "entra":
            self.refresher = self._entra(config)
        elif config.api_key:
            self._static_headers.append(("api-key", config.api_key))

    def responses_path(self) -> str:
        return f"{self.base_path}/openai/v1/responses"  # the deployment is the body's `model`

    def _entra(self, config: ProviderConfig) -> Refresher[str]:
        try:
            entra = importlib.import_module("llm_gateway.providers.azure.entra")
        except ModuleNotFoundError as exc:
            raise ValueError(f"providers.{config.name}: auth entra needs azure-identity ({exc.name} is missing): "
                             "pip install 'llm-gateway[cloud]'") from None
        # azure-identity refreshes a cached token once it has less than 5 minutes left: ours comes after that.
        return Refresher(self.name, "Microsoft Entra ID token", entra.EntraTokens(config.options), margin=240.0)

    def prepare(self, call: UpstreamCall) -> PreparedRequest:
        if call.native_body is not None:
            prepared = super().prepare(call)
        elif call.endpoint not in CANONICAL:
            raise NotFound(f"provider {self.name!r} serves chat completions, completions and embeddings only",
                           code="unsupported_endpoint")
        else:
            prepared = self._deployment_call(call)
        if self.refresher is not None:  # the gateway's own identity, never the client's credentials
            token = self.refresher.current()
            prepared.headers = [h for h in prepared.headers if h[0] != "authorization"]
            prepared.headers.append(("authorization", token))
        elif self.config.api_key:  # never forward the client's own credentials next to the configured key
            prepared.headers = [h for h in prepared.headers if h[0] != "authorization"]
        return prepared

    def _deployment_call(self, call: UpstreamCall) -> PreparedRequest:
        prepared = super().prepare(call)
        if self.api_version == "v1":  # the v1 API takes the deployment as `model` in the body
            prepared.path = f"{self.base_path}/openai/v1/{call.endpoint}"
        else:
            # The deployment may be the client's (`azure/<any name>`): it stays one path segment.
            prepared.path = (f"{self.base_path}/openai/deployments/{path_segment(call.model)}/{call.endpoint}"
                             f"?api-version={self.api_version}")
        return prepared
