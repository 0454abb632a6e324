"""Request parameters a translated provider cannot take: dropped with a warning header, or a 400 naming them."""

from __future__ import annotations

from typing import Any

from llm_gateway.errors import BadRequest

# Looked at by the gateway itself, never by a provider.
GATEWAY_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "user", "input"})
DROP, ERROR = "drop", "error"
WARNING_HEADER = "x-llm-gateway-dropped-params"


class ParamPolicy:
    """Which OpenAI parameters one provider type understands, and what to do with the others.

    The policy is `options.unsupported_params` of the provider (`drop`, the default, or `error`).
    """

    __slots__ = ("mode", "supported")

    def __init__(self, supported: frozenset[str], options: dict[str, Any]) -> None:
        mode = options.get("unsupported_params", DROP)
        if mode not in (DROP, ERROR):
            raise ValueError(f"options.unsupported_params must be {DROP!r} or {ERROR!r}, not {mode!r}")
        self.mode = mode
        self.supported = supported | GATEWAY_PARAMS

    def check(self, body: dict[str, Any], provider: str) -> tuple[str, ...]:
        """The names of the parameters that will be dropped (a 400 instead when the policy says so)."""
        unsupported = [k for k, v in body.items()
                       if k not in self.supported and v is not None and not (k == "n" and v == 1)]
        if not unsupported:
            return ()
        unsupported.sort()
        if self.mode == ERROR:
            names = ", ".join(unsupported)
            raise BadRequest(f"provider {provider!r} does not support the parameter(s) {names}",
                             param=unsupported[0], code="unsupported_parameter")
        return tuple(unsupported)
