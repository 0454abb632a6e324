"""`webhook` and `llm_judge` guardrails: a decision asked of another service, within `timeout_s`.

A webhook gets `POST {"guardrail", "stage", "texts", "model", "request_id"}` and answers
`{"action": "allow" | "block"}`. A judge is any model this gateway serves: it gets the guardrail's `prompt` as
its system message and the texts as the user message, and its answer counts as a block when it starts with
BLOCK (or UNSAFE). A service that fails, times out or answers anything else follows `on_error`: `open` lets the
request go on, `closed` blocks it. Both go out through the gateway's own HTTP client.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson

from llm_gateway.guardrails.base import Check, CheckFailed, Parts, Span, whole
from llm_gateway.providers.base import CHAT, UpstreamCall
from llm_gateway.providers.wire import Origin, PreparedRequest, Timeouts
from llm_gateway.settings import GuardrailConfig

VERDICT = re.compile(r"^\W*(block|unsafe|allow|safe)\b", re.IGNORECASE)


class WebhookCheck(Check):
    def __init__(self, config: GuardrailConfig, client: Any) -> None:
        super().__init__(config)
        assert config.url is not None
        self.origin, path = Origin.from_url(config.url)
        self.path = path or "/"
        self.client = client
        self.timeouts = Timeouts(config.timeout_s, config.timeout_s, config.timeout_s, config.timeout_s)
        self.headers = [("content-type", "application/json"), *config.headers.items()]

    async def scan(self, texts: list[str], stage: str) -> list[list[Span]]:
        body = orjson.dumps({"guardrail": self.name, "stage": stage, "texts": texts})
        request = PreparedRequest("POST", self.path, list(self.headers), body)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                response = await self.client.send(self.origin, request, self.timeouts, label=f"guardrail:{self.name}")
                answer = await response.read()
        except Exception as exc:  # a timeout, a refused connection, a cut answer
            raise CheckFailed(type(exc).__name__) from None
        if response.status != 200:
            raise CheckFailed(f"status {response.status}")
        try:
            action = orjson.loads(answer).get("action")
        except (orjson.JSONDecodeError, AttributeError):
            raise CheckFailed("not a JSON object") from None
        if action not in ("allow", "block"):
            raise CheckFailed("no action")
        return [whole(t, "WEBHOOK") if action == "block" else [] for t in texts]


class JudgeCheck(Check):
    def __init__(self, config: GuardrailConfig, catalog: Any, client: Any) -> None:
        super().__init__(config)
        self.catalog = catalog
        self.client = client
        self.model = config.model or ""

    async def scan(self, texts: list[str], stage: str) -> list[list[Span]]:
        route = self.catalog.resolve(self.model)
        if route is None:
            raise CheckFailed("the judge model is not served")
        deployment = route.pick()
        provider = deployment.provider
        body = {"model": self.model, "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "system", "content": self.config.prompt},
                             {"role": "user", "content": "\n\n".join(texts)}]}
        call = UpstreamCall(endpoint=CHAT, body=body, model=deployment.model, stream=False,
                            client_wants_usage=False, client_auth=None, client_headers={})
        timeout = self.config.timeout_s
        try:
            async with asyncio.timeout(timeout):
                response = await (provider.transport or self.client).send(
                    provider.origin, provider.prepare(call), Timeouts(timeout, timeout, timeout, timeout),
                    label=provider.name)
                answer = await response.read()
            if response.status != 200:
                raise CheckFailed(f"status {response.status}")
            content = orjson.loads(provider.parse(call, answer).body)["choices"][0]["message"]["content"] or ""
        except CheckFailed:
            raise
        except Exception as exc:
            raise CheckFailed(type(exc).__name__) from None
        match = VERDICT.match(content)
        if match is None:
            raise CheckFailed("the judge answered neither ALLOW nor BLOCK")
        blocked = match.group(1).lower() in ("block", "unsafe")
        return [whole(t, "JUDGE") if blocked else [] for t in texts]


def build(config: GuardrailConfig, parts: Parts) -> Check:
    if config.type == "webhook":
        return WebhookCheck(config, parts.client)
    return JudgeCheck(config, parts.catalog, parts.client)
