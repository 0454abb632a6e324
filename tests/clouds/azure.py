"""Azure on loopback: Microsoft Entra ID (OpenID discovery, the v2.0 token endpoint for client credentials with
a secret or a federated assertion), a managed identity endpoint (App Service's `IDENTITY_ENDPOINT`, API version
2019-08-01) and Azure OpenAI's chat completions, which take only a bearer token the
token endpoint issued for the Cognitive Services scope.

azure-identity refuses an `http://` authority, so this server speaks TLS with a test CA (trustme).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TENANT = "00000000-0000-0000-0000-0000000000aa"
CLIENT_ID = "11111111-1111-1111-1111-111111111111"
CLIENT_SECRET = "entra-client-secret-value"
FEDERATED_TOKEN = "eyJhbGciOiJSUzI1NiJ9.aks-workload-identity.signature"
SCOPE = "https://cognitiveservices.azure.com/.default"
IDENTITY_HEADER = "managed-identity-header-secret"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class AzureCloud:
    token_lifetime: int = 3600
    tokens: dict[str, tuple[float, str]] = field(default_factory=dict)  # token -> (expires at, how it was got)
    token_calls: list[dict[str, Any]] = field(default_factory=list)
    openai_calls: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    url: str = ""


def make_app(cloud: AzureCloud) -> web.Application:
    @web.middleware
    async def note(request: web.Request, handler: Any) -> web.StreamResponse:
        cloud.paths.append(f"{request.method} {request.path}")
        response: web.StreamResponse = await handler(request)
        return response

    async def openid(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        base = f"{cloud.url}/{tenant}"
        return web.json_response({
            "token_endpoint": f"{base}/oauth2/v2.0/token", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{cloud.url}/{tenant}/v2.0", "jwks_uri": f"{cloud.url}/{tenant}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"]})

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        how = ""
        if form.get("client_secret") == CLIENT_SECRET:
            how = "client-secret"
        elif form.get("client_assertion_type") == ASSERTION_TYPE and form.get("client_assertion") == FEDERATED_TOKEN:
            how = "workload-identity"
        cloud.token_calls.append({"tenant": request.match_info["tenant"], "grant_type": form.get("grant_type"),
                                  "client_id": form.get("client_id"), "scope": form.get("scope"), "how": how})
        if (request.match_info["tenant"] != TENANT or form.get("grant_type") != "client_credentials"
                or form.get("client_id") != CLIENT_ID or not how):
            return web.json_response({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid "
                                      "client secret provided.", "error_codes": [7000215]}, status=401)
        if form.get("scope") != SCOPE:
            return web.json_response({"error": "invalid_scope"}, status=400)
        access = f"eyJ0eXAiOiJKV1QifQ.{secrets.token_urlsafe(24)}.sig"
        cloud.tokens[access] = (time.time() + cloud.token_lifetime, how)
        return web.json_response({"token_type": "Bearer", "expires_in": cloud.token_lifetime,
                                  "ext_expires_in": cloud.token_lifetime, "access_token": access})

    async def managed_identity(request: web.Request) -> web.Response:
        query = request.query
        cloud.token_calls.append({"how": "managed-identity", "resource": query.get("resource"),
                                  "api_version": query.get("api-version")})
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return web.json_response({"statusCode": 401, "message": "bad identity header"}, status=401)
        if query.get("resource") != SCOPE.removesuffix("/.default"):
            return web.json_response({"statusCode": 400, "message": "bad resource"}, status=400)
        access = f"eyJ0eXAiOiJKV1QifQ.{secrets.token_urlsafe(24)}.mi"
        expires = time.time() + cloud.token_lifetime
        cloud.tokens[access] = (expires, "managed-identity")
        return web.json_response({"access_token": access, "expires_on": str(int(expires)),
                                  "resource": query["resource"], "token_type": "Bearer", "client_id": CLIENT_ID})

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        scheme, _, access = request.headers.get("Authorization", "").partition(" ")
        found = cloud.tokens.get(access) if scheme == "Bearer" else None
        ok = found is not None and found[0] > time.time() and "api-key" not in request.headers
        cloud.openai_calls.append({"path": request.path_qs, "how": found[1] if found else None, "ok": ok,
                                   "body": body})
        if not ok:
            return web.json_response({"error": {"code": "401", "message": "Access denied due to invalid "
                                                 "subscription key or wrong API endpoint."}}, status=401)
        deployment = request.match_info["deployment"]
        return web.json_response({
            "id": "chatcmpl-az1", "object": "chat.completion", "created": int(time.time()), "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"Hello from {deployment}"}}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}})

    app = web.Application(middlewares=[note])
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_get("/msi/token", managed_identity)
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", chat)
    return app
