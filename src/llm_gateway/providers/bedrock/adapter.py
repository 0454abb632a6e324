"""The `bedrock` provider type: Converse / ConverseStream for chat, InvokeModel for embeddings, SigV4-signed.

Credentials come from `options` (`access_key_id`, `secret_access_key`, optional `session_token`), for a
Bedrock API key from `api_key` (sent as a bearer token, unsigned), and otherwise from AWS's standard credential
chain (providers/bedrock/aws_chain.py; `options.profile`, `options.role_arn`), refreshed in the background.
`options.region` picks the endpoint.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

import orjson

from llm_gateway.errors import GatewayError, NotFound, UpstreamUnavailable
from llm_gateway.pipeline.context import Usage
from llm_gateway.providers import embeddings
from llm_gateway.providers.base import (
    CHAT,
    EMBEDDINGS,
    ParsedResponse,
    PreparedRequest,
    Provider,
    StreamDecoder,
    UpstreamCall,
)
from llm_gateway.providers.bedrock.request import SUPPORTED, to_converse_request, to_embedding_request
from llm_gateway.providers.bedrock.response import ERROR_KINDS, ConverseStreamDecoder, to_chat_completion
from llm_gateway.providers.bedrock.sigv4 import Credentials, Signer, canonical_path
from llm_gateway.providers.credentials import Refresher
from llm_gateway.providers.error_map import kind_of_status, mapped_error
from llm_gateway.providers.params import ParamPolicy
from llm_gateway.providers.usage_map import usage_from
from llm_gateway.providers.wire import path_segment
from llm_gateway.settings import ProviderConfig

SERVICE = "bedrock"


def amz_now() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


class BedrockProvider(Provider):
    type = "bedrock"
    price_catalog = "aws"  # model ids and us./eu./apac./global. inference profiles, by genai-prices' rules
    clock: Callable[[], str] = staticmethod(amz_now)  # replaced in tests to sign at a fixed instant

    def __init__(self, config: ProviderConfig) -> None:
        options = config.options
        self.region = str(options.get("region") or "us-east-1")
        super().__init__(config)
        self.policy = ParamPolicy(SUPPORTED, options)
        self.embed_policy = ParamPolicy(embeddings.SUPPORTED, options)
        self.signer: Signer | None = None
        if options.get("access_key_id") and options.get("secret_access_key"):
            creds = Credentials(str(options["access_key_id"]), str(options["secret_access_key"]),
                                str(options["session_token"]) if options.get("session_token") else None)
            self.signer = Signer(creds, self.region, SERVICE)
        elif not config.api_key:
            self.refresher = self._credential_chain(config)
        self._extra = [(k.lower(), v) for k, v in config.headers.items()]

    def _credential_chain(self, config: ProviderConfig) -> Refresher[Signer]:
        try:
            chain = importlib.import_module("llm_gateway.providers.bedrock.aws_chain")
        except ModuleNotFoundError as exc:
            raise ValueError(f"providers.{config.name}: bedrock without keys uses AWS's credential chain, which "
                             f"needs botocore ({exc.name} is missing): pip install 'llm-gateway[cloud]'") from None
        options = config.options
        fetch = chain.AwsChain(self.region, SERVICE, profile=options.get("profile"), role_arn=options.get("role_arn"),
                               session_name=str(options.get("role_session_name") or "llm-gateway"),
                               external_id=options.get("external_id"))
        what = f"AWS credentials (role {options['role_arn']})" if options.get("role_arn") else "AWS credentials"
        return Refresher(self.name, what, fetch, margin=chain.MARGIN_S)

    def default_base_url(self) -> str:
        return f"https://bedrock-runtime.{self.region}.amazonaws.com"

    def _request(self, path: str, body: bytes, accept: str) -> PreparedRequest:
        headers = [("content-type", "application/json"), ("accept", accept), *self._extra]
        signer = self.signer
        if signer is None:
            if self.refresher is None:
                headers.append(("authorization", f"Bearer {self.config.api_key}"))
                return PreparedRequest("POST", path, headers, body)
            signer = self.refresher.current()
        amz_date = self.clock()
        signed = {"host": self.origin.host_header, "x-amz-date": amz_date, "content-type": "application/json"}
        token = signer.credentials.session_token
        if token:
            signed["x-amz-security-token"] = token
        auth = signer.authorization("POST", canonical_path(path), "", signed, body, amz_date)
        headers.append(("x-amz-date", amz_date))
        if token:
            headers.append(("x-amz-security-token", token))
        headers.append(("authorization", auth))
        return PreparedRequest("POST", path, headers, body)

    def _path(self, model: str, action: str) -> str:
        return f"{self.base_path}/model/{path_segment(model)}/{action}"  # `:` in model ids goes out as %3A

    def prepare(self, call: UpstreamCall) -> PreparedRequest:
        if call.endpoint == EMBEDDINGS:
            dropped = self.embed_policy.check(call.body, self.name)
            body = to_embedding_request(call.model, embeddings.inputs_of(call.body), call.body, self.config.options)
            prepared = self._request(self._path(call.model, "invoke"), orjson.dumps(body), "application/json")
        elif call.endpoint == CHAT:
            dropped = self.policy.check(call.body, self.name)
            body, conflicts = to_converse_request(call.body)
            dropped = tuple(sorted({*dropped, *conflicts}))
            if call.stream:
                prepared = self._request(self._path(call.model, "converse-stream"), orjson.dumps(body),
                                         "application/vnd.amazon.eventstream")
            else:
                prepared = self._request(self._path(call.model, "converse"), orjson.dumps(body), "application/json")
        else:
            raise NotFound(f"provider {self.name!r} serves chat completions and embeddings only",
                           code="unsupported_endpoint")
        prepared.dropped = dropped
        return prepared

    def parse(self, call: UpstreamCall, body: bytes) -> ParsedResponse:
        try:
            obj: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable("the upstream answered with invalid JSON") from None
        if call.endpoint == EMBEDDINGS:
            vectors = obj.get("embeddings") if "embeddings" in obj else [obj.get("embedding") or []]
            if isinstance(vectors, dict):  # Cohere with embedding_types answers {"float": [...]}
                vectors = vectors.get("float") or []
            usage: Usage | None = usage_from("bedrock-embeddings", obj) if "inputTextTokenCount" in obj else None
            out = embeddings.embeddings_response(vectors, call.model, call.body, usage)
            return ParsedResponse(orjson.dumps(out), usage)
        result, usage, texts = to_chat_completion(obj, call.model, f"chatcmpl-{time.time_ns():x}")
        return ParsedResponse(orjson.dumps(result), usage, texts)

    def stream_decoder(self, call: UpstreamCall) -> StreamDecoder:
        return ConverseStreamDecoder(call.model, call.client_wants_usage, f"chatcmpl-{time.time_ns():x}")

    def error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        try:
            obj: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = None
        message = ""
        if isinstance(obj, dict):
            message = str(obj.get("message") or obj.get("Message") or "")
        elif body:
            message = body.decode("utf-8", "replace")[:500]
        name = headers.get("x-amzn-errortype", "").split(":", 1)[0]
        kind = ERROR_KINDS.get(name) or kind_of_status(status, message)
        if kind == "invalid" and kind_of_status(status, message) == "context_length":
            kind = "context_length"
        return mapped_error(kind, f"{name}: {message}" if name else message, self.name, headers)
