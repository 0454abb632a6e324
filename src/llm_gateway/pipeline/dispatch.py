"""Dispatch: send a request to a deployment of its route and hand back the upstream response head."""

from __future__ import annotations

from llm_gateway.pipeline.context import RequestContext
from llm_gateway.providers.base import UpstreamCall
from llm_gateway.providers.http import HttpClient, UpstreamResponse
from llm_gateway.routing.catalog import Deployment


class Dispatcher:
    def __init__(self, client: HttpClient) -> None:
        self.client = client

    def call_for(self, ctx: RequestContext, deployment: Deployment, client_auth: str | None) -> UpstreamCall:
        return UpstreamCall(
            endpoint=ctx.endpoint, body=ctx.body, model=deployment.model, stream=ctx.stream,
            client_wants_usage=ctx.client_wants_usage, client_auth=client_auth,
            client_headers=ctx.request.headers, method=ctx.request.method, query=ctx.request.query,
            raw_body=ctx.request.body)

    async def send(self, ctx: RequestContext, client_auth: str | None) -> tuple[UpstreamCall, UpstreamResponse]:
        """Pick a deployment, send, and return once the response head arrived.

        An upstream error status raises the provider's mapped GatewayError.
        """
        deployment = ctx.route.pick()
        provider = deployment.provider
        ctx.deployment = deployment
        ctx.provider = provider.name
        ctx.upstream_model = deployment.model
        call = self.call_for(ctx, deployment, client_auth)
        prepared = provider.prepare(call)
        ctx.attempts += 1
        response = await self.client.send(provider.origin, prepared.head(), prepared.body, provider.timeouts)
        if response.status >= 400:
            body = await response.read()
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.headers}
            raise provider.error(response.status, body, headers)
        return call, response
