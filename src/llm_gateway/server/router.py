"""Routes requests to handlers by method and path; `{name}` segments become `request.params`."""

from __future__ import annotations

from llm_gateway.errors import GatewayError, NotFound
from llm_gateway.server.http import Handler, Request, Responder


class Router:
    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], Handler] = {}
        self._patterns: list[tuple[str, list[str], Handler]] = []
        self._prefixes: list[tuple[str, Handler]] = []
        self._paths: set[str] = set()

    def add(self, method: str, path: str, handler: Handler) -> None:
        if "{" in path:
            self._patterns.append((method, path.strip("/").split("/"), handler))
        else:
            self._exact[(method, path)] = handler
            self._paths.add(path)

    def add_prefix(self, prefix: str, handler: Handler) -> None:
        """Every path under `prefix` not matched otherwise, any method."""
        self._prefixes.append((prefix, handler))

    async def __call__(self, request: Request, responder: Responder) -> None:
        path = request.path
        handler = self._exact.get((request.method, path))
        if handler is None and len(path) > 1 and path.endswith("/"):
            handler = self._exact.get((request.method, path.rstrip("/")))
        if handler is None:
            if path.rstrip("/") in self._paths:
                raise GatewayError(f"method {request.method} is not allowed on {path}", status=405,
                                   type="invalid_request_error", code="method_not_allowed")
            handler = self._match(request)
        if handler is None:
            raise NotFound(f"unknown path {path}", code="unknown_url")
        await handler(request, responder)

    def _match(self, request: Request) -> Handler | None:
        parts = request.path.strip("/").split("/")
        for method, pattern, handler in self._patterns:
            if method != request.method or len(pattern) != len(parts):
                continue
            params = {}
            for want, got in zip(pattern, parts, strict=True):
                if want.startswith("{"):
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                request.params = params
                return handler
        for prefix, handler in self._prefixes:
            if request.path.startswith(prefix):
                return handler
        return None
