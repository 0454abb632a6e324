"""Google Cloud on loopback: the OAuth token endpoint (service-account JWT grant), Security Token Service (token
exchange for workload identity federation), the GCE metadata server, and
Vertex AI's generateContent / streamGenerateContent / rawPredict / streamRawPredict / predict.

The token endpoint verifies the signed JWT assertion with the service account's public key (RFC 7523, as
Google's docs describe it); Vertex answers only to a bearer token the token endpoint or the metadata server
issued and that has not expired.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SA_EMAIL = "gateway@proj-1.iam.gserviceaccount.com"
POOL_AUDIENCE = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/eks/providers/oidc"
SUBJECT_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eks-service-account-token.signature"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Issued:
    token: str
    expires_at: float
    source: str  # "service-account", "metadata" or "federation"


@dataclass
class GoogleCloud:
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537,
                                                                                    key_size=2048))
    token_lifetime: int = 3600
    token_delay: float = 0.0  # seconds the token endpoints take to answer
    tokens: dict[str, Issued] = field(default_factory=dict)
    token_calls: list[dict[str, Any]] = field(default_factory=list)  # service-account JWT grants, verified
    exchange_calls: list[dict[str, Any]] = field(default_factory=list)  # STS token exchanges
    metadata_calls: list[str] = field(default_factory=list)
    vertex_calls: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def service_account_file(self, path: Path, token_path: str = "/token") -> Path:
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "proj-1", "private_key_id": "k1", "private_key": pem,
            "client_email": SA_EMAIL, "client_id": "1234567890", "token_uri": f"{self.url}{token_path}",
        }))
        return path

    def federation_file(self, path: Path, subject_file: Path) -> Path:
        """A workload identity federation config (`external_account`): an OIDC token from a file, exchanged."""
        subject_file.write_text(SUBJECT_TOKEN)
        path.write_text(json.dumps({
            "type": "external_account", "audience": POOL_AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": f"{self.url}/sts/v1/token",
            "credential_source": {"file": str(subject_file)}}))
        return path

    def issue(self, source: str) -> dict[str, Any]:
        token = f"ya29.{secrets.token_urlsafe(24)}"
        self.tokens[token] = Issued(token, time.time() + self.token_lifetime, source)
        return {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    def check_assertion(self, assertion: str) -> dict[str, Any]:
        """The JWT's RS256 signature with the service account's public key, then its claims."""
        head, payload, signature = assertion.split(".")
        self.key.public_key().verify(_b64url(signature), f"{head}.{payload}".encode(), padding.PKCS1v15(),
                                     hashes.SHA256())
        header, claims = json.loads(_b64url(head)), json.loads(_b64url(payload))
        assert header["alg"] == "RS256" and header.get("kid") == "k1", header
        # the audience is Google's token endpoint whatever `token_uri` says (as Google's OAuth docs write it)
        assert claims["iss"] == SA_EMAIL and claims["aud"] == "https://oauth2.googleapis.com/token", claims
        assert claims["scope"] == SCOPE, claims
        assert claims["iat"] <= time.time() + 5 < claims["exp"] + 5, claims
        return dict(claims)

    def bearer_ok(self, header: str) -> Issued | None:
        scheme, _, token = header.partition(" ")
        found = self.tokens.get(token) if scheme == "Bearer" else None
        return found if found is not None and found.expires_at > time.time() else None


def _sse(events: list[Any], names: list[str] | None = None) -> bytes:
    out = []
    for i, event in enumerate(events):
        prefix = f"event: {names[i]}\n" if names else ""
        out.append(f"{prefix}data: {json.dumps(event)}\n\n")
    return "".join(out).encode()


GEMINI_ANSWER = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello from Vertex"}]},
                                 "finishReason": "STOP"}],
                 "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 4, "totalTokenCount": 11},
                 "modelVersion": "gemini-2.5-flash"}
GEMINI_STREAM = [
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello "}]}}],
     "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "from Vertex"}]}, "finishReason": "STOP"}],
     "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 4, "totalTokenCount": 11}},
]
CLAUDE_ANSWER = {"id": "msg_vrtx_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                 "content": [{"type": "text", "text": "Hello from Claude on Vertex"}], "stop_reason": "end_turn",
                 "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 6}}
CLAUDE_STREAM = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_vrtx_02", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Hello from "}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Claude on Vertex"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 6}}),
    ("message_stop", {"type": "message_stop"}),
]


def make_app(cloud: GoogleCloud) -> web.Application:
    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        await asyncio.sleep(cloud.token_delay)
        if form.get("grant_type") != JWT_GRANT:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            claims = cloud.check_assertion(str(form.get("assertion", "")))
        except Exception as exc:
            return web.json_response({"error": "invalid_grant", "error_description": repr(exc)}, status=400)
        cloud.token_calls.append(claims)
        return web.json_response(cloud.issue("service-account"))

    async def exchange(request: web.Request) -> web.Response:
        form = await request.post()
        cloud.exchange_calls.append({"grant_type": form.get("grant_type"), "audience": form.get("audience")})
        if (form.get("grant_type") != TOKEN_EXCHANGE or form.get("subject_token") != SUBJECT_TOKEN
                or form.get("audience") != POOL_AUDIENCE or form.get("scope") != SCOPE):
            return web.json_response({"error": "invalid_grant"}, status=400)
        return web.json_response({**cloud.issue("federation"),
                                  "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})

    async def refused(request: web.Request) -> web.Response:
        return web.json_response({"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
                                 status=400)

    def metadata(handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            cloud.metadata_calls.append(request.path_qs)
            if request.headers.get("Metadata-Flavor") != "Google":
                return web.Response(status=403, text="Missing Metadata-Flavor:Google header.")
            response: web.StreamResponse = await handler(request)
            response.headers["Metadata-Flavor"] = "Google"
            return response
        return wrapped

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="computeMetadata/\n")

    async def sa_info(request: web.Request) -> web.Response:
        return web.json_response({"aliases": ["default"], "email": SA_EMAIL, "scopes": [SCOPE]})

    async def sa_email(request: web.Request) -> web.Response:
        return web.Response(text=SA_EMAIL)

    async def md_token(request: web.Request) -> web.Response:
        await asyncio.sleep(cloud.token_delay)
        return web.json_response(cloud.issue("metadata"))

    async def project_id(request: web.Request) -> web.Response:
        return web.Response(text="proj-1")

    async def vertex(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        issued = cloud.bearer_ok(request.headers.get("Authorization", ""))
        call = {"path": request.path, "query": request.query_string, "body": json.loads(raw or b"{}"),
                "source": issued.source if issued else None,
                "token": request.headers.get("Authorization", "").partition(" ")[2]}
        cloud.vertex_calls.append(call)
        if issued is None:
            return web.json_response({"error": {"code": 401, "message": "Request had invalid authentication "
                                                "credentials.", "status": "UNAUTHENTICATED"}}, status=401)
        tail = request.path.rsplit("/publishers/", 1)[-1]  # {publisher}/models/{model}:{method}
        publisher, _, rest = tail.partition("/models/")
        model, _, method = rest.partition(":")
        body = call["body"]
        if model.endswith("-overloaded"):  # a Claude model's own error shape, through rawPredict
            return web.json_response({"type": "error", "error": {"type": "overloaded_error",
                                                                 "message": "Overloaded"}}, status=529)
        if model.endswith("-exhausted"):  # Vertex's own (google.rpc) error shape
            return web.json_response({"error": {"code": 429, "message": "Quota exceeded for "
                                                "aiplatform.googleapis.com/generate_content_requests_per_minute",
                                                "status": "RESOURCE_EXHAUSTED"}}, status=429)
        if publisher == "anthropic":
            if body.get("anthropic_version") != "vertex-2023-10-16" or "model" in body:
                return web.json_response({"type": "error", "error": {
                    "type": "invalid_request_error", "message": "bad vertex body"}}, status=400)
            if method == "rawPredict":
                return web.json_response(CLAUDE_ANSWER)
            if method == "streamRawPredict" and body.get("stream") is True:
                return web.Response(body=_sse([e for _, e in CLAUDE_STREAM], [n for n, _ in CLAUDE_STREAM]),
                                    content_type="text/event-stream")
        elif publisher == "google":
            if method == "generateContent":
                return web.json_response({**GEMINI_ANSWER, "modelVersion": model})
            if method == "streamGenerateContent" and request.query.get("alt") == "sse":
                return web.Response(body=_sse(GEMINI_STREAM), content_type="text/event-stream")
            if method == "predict":
                preds = [{"embeddings": {"values": [0.25, -0.5, float(len(i["content"]))],
                                         "statistics": {"token_count": len(i["content"].split()),
                                                        "truncated": False}}}
                         for i in body["instances"]]
                return web.json_response({"predictions": preds})
        return web.json_response({"error": {"code": 404, "message": f"{tail} not found", "status": "NOT_FOUND"}},
                                 status=404)

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_post("/refused-token", refused)
    app.router.add_post("/sts/v1/token", exchange)
    app.router.add_get("/", metadata(ping))
    base = "/computeMetadata/v1"
    app.router.add_get(f"{base}/instance/service-accounts/{{account}}/", metadata(sa_info))
    app.router.add_get(f"{base}/instance/service-accounts/{{account}}/email", metadata(sa_email))
    app.router.add_get(f"{base}/instance/service-accounts/{{account}}/token", metadata(md_token))
    app.router.add_get(f"{base}/project/project-id", metadata(project_id))
    app.router.add_post("/v1/{tail:.*}", vertex)
    return app
