"""AWS on loopback: STS (AssumeRoleWithWebIdentity, AssumeRole; Query protocol, XML answers), the container
credentials endpoint (ECS / EKS Pod Identity), IMDSv2, and Bedrock's Converse checking SigV4 signatures.

Every key pair handed out is remembered with its expiry: Bedrock (and STS AssumeRole) accept a request only
when its SigV4 signature, recomputed by tests/providers/sigv4_reference.py with the issued secret, matches,
and the keys have not expired.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.providers.sigv4_reference import expected_authorization

WEB_IDENTITY_TOKEN = "eyJhbGciOiJSUzI1NiJ9.irsa-service-account-token.signature"
CONTAINER_TOKEN = "container-authorization-token"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


@dataclass
class Keys:
    access_key: str
    secret: str
    token: str
    expires_at: float
    source: str  # container / web-identity / assume-role:<role> / imds


@dataclass
class AwsCloud:
    lifetimes: dict[str, int] = field(default_factory=dict)  # source -> seconds; default one hour
    delays: dict[str, float] = field(default_factory=dict)  # source -> seconds the endpoint takes
    keys: dict[str, Keys] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)  # identity endpoint calls
    bedrock_calls: list[dict[str, Any]] = field(default_factory=list)
    imds_tokens: set[str] = field(default_factory=set)
    url: str = ""

    def issue(self, source: str) -> Keys:
        kind = source.split(":", 1)[0]
        keys = Keys(f"ASIA{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30), secrets.token_urlsafe(60),
                    time.time() + self.lifetimes.get(kind, 3600), source)
        self.keys[keys.access_key] = keys
        return keys

    def verify(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Keys:
        """The keys that signed this request; AssertionError when the signature or the keys are wrong."""
        auth = headers.get("authorization", "")
        match = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request, "
                         r"SignedHeaders=([^,]+), Signature=[0-9a-f]{64}$", auth)
        assert match, f"not a SigV4 authorization: {auth[:40]}"
        access_key, region, service, signed = match.groups()
        keys = self.keys.get(access_key)
        assert keys is not None, "unknown access key"
        assert keys.expires_at > time.time(), f"expired keys ({keys.source})"
        assert headers.get("x-amz-security-token") == keys.token, "wrong session token"
        assert "x-amz-security-token" in signed.split(";")
        want = expected_authorization(method, path, headers, signed.split(";"), body, access_key, keys.secret,
                                      region, service)
        assert auth == want, "signature mismatch"
        return keys


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sts_xml(action: str, keys: Keys, role_arn: str) -> str:
    return (f'<{action}Response xmlns="{STS_NS}"><{action}Result>'
            f"<Credentials><AccessKeyId>{keys.access_key}</AccessKeyId>"
            f"<SecretAccessKey>{keys.secret}</SecretAccessKey><SessionToken>{keys.token}</SessionToken>"
            f"<Expiration>{_iso(keys.expires_at)}</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>AROA0000:llm-gateway</AssumedRoleId>"
            f"<Arn>{role_arn.replace(':iam:', ':sts:').replace(':role/', ':assumed-role/')}/llm-gateway</Arn>"
            f"</AssumedRoleUser></{action}Result>"
            f"<ResponseMetadata><RequestId>{secrets.token_hex(8)}</RequestId></ResponseMetadata>"
            f"</{action}Response>")


def _sts_error(code: str, message: str, status: int = 403) -> web.Response:
    return web.Response(status=status, content_type="text/xml", text=(
        f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>0</RequestId></ErrorResponse>"))


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def make_app(cloud: AwsCloud) -> web.Application:
    async def sts(request: web.Request) -> web.Response:
        raw = await request.read()
        form = await request.post()
        action, role = str(form.get("Action")), str(form.get("RoleArn"))
        cloud.calls.append({"endpoint": "sts", "action": action, "role": role,
                            "session": form.get("RoleSessionName")})
        if action == "AssumeRoleWithWebIdentity":  # unsigned: the web identity token is the proof
            if form.get("WebIdentityToken") != WEB_IDENTITY_TOKEN:
                return _sts_error("InvalidIdentityToken", "Couldn't retrieve verification key")
            await asyncio.sleep(cloud.delays.get("web-identity", 0))
            return web.Response(content_type="text/xml", text=_sts_xml(action, cloud.issue("web-identity"), role))
        if action == "AssumeRole":
            try:
                source = cloud.verify("POST", request.raw_path, _lower(request.headers), raw)
            except AssertionError as exc:
                return _sts_error("SignatureDoesNotMatch", str(exc))
            cloud.calls[-1]["signed_by"] = source.source
            return web.Response(content_type="text/xml", text=_sts_xml(action, cloud.issue(f"assume-role:{role}"),
                                                                        role))
        return _sts_error("InvalidAction", action, 400)

    async def container(request: web.Request) -> web.Response:
        cloud.calls.append({"endpoint": "container"})
        if request.headers.get("Authorization") != CONTAINER_TOKEN:
            return web.json_response({"message": "unauthorized"}, status=401)
        await asyncio.sleep(cloud.delays.get("container", 0))
        keys = cloud.issue("container")
        return web.json_response({"AccessKeyId": keys.access_key, "SecretAccessKey": keys.secret,
                                  "Token": keys.token, "Expiration": _iso(keys.expires_at),
                                  "RoleArn": "arn:aws:iam::123456789012:role/task-role"})

    async def imds_token(request: web.Request) -> web.Response:
        if "x-aws-ec2-metadata-token-ttl-seconds" not in _lower(request.headers):
            return web.Response(status=400)
        token = secrets.token_urlsafe(20)
        cloud.imds_tokens.add(token)
        return web.Response(text=token)

    def imds(handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.Response:
            cloud.calls.append({"endpoint": "imds", "path": request.path})
            if request.headers.get("x-aws-ec2-metadata-token") not in cloud.imds_tokens:
                return web.Response(status=401)  # IMDSv2 only: no session token, no answer
            response: web.Response = await handler(request)
            return response
        return wrapped

    async def imds_roles(request: web.Request) -> web.Response:
        return web.Response(text="instance-role")

    async def imds_credentials(request: web.Request) -> web.Response:
        keys = cloud.issue("imds")
        return web.json_response({"Code": "Success", "LastUpdated": _iso(time.time()), "Type": "AWS-HMAC",
                                  "AccessKeyId": keys.access_key, "SecretAccessKey": keys.secret,
                                  "Token": keys.token, "Expiration": _iso(keys.expires_at)})

    async def converse(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            keys = cloud.verify("POST", request.raw_path, _lower(request.headers), raw)
        except AssertionError as exc:
            cloud.bedrock_calls.append({"path": request.path, "error": str(exc)})
            return web.json_response({"message": f"The request signature is invalid: {exc}"}, status=403,
                                     headers={"x-amzn-ErrorType": "UnrecognizedClientException:http://internal"})
        cloud.bedrock_calls.append({"path": request.path, "source": keys.source, "access_key": keys.access_key})
        return web.json_response({
            "output": {"message": {"role": "assistant", "content": [{"text": "Hello from Bedrock"}]}},
            "stopReason": "end_turn", "usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8},
            "metrics": {"latencyMs": 12}})

    app = web.Application()
    app.router.add_post("/sts/", sts)
    app.router.add_get("/container-credentials", container)
    app.router.add_put("/latest/api/token", imds_token)
    app.router.add_get("/latest/meta-data/iam/security-credentials/", imds(imds_roles))
    app.router.add_get("/latest/meta-data/iam/security-credentials/instance-role", imds(imds_credentials))
    app.router.add_post("/model/{model}/converse", converse)
    return app
