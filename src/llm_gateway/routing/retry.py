"""Which failed attempts are worth another try, and how long to wait first (exponential backoff, jitter,
the upstream's Retry-After)."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

from llm_gateway.errors import GatewayError, UpstreamHTTPError, UpstreamTimeout, UpstreamUnavailable
from llm_gateway.settings import RetryConfig

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
_CONTEXT_MARKERS = ("context_length_exceeded", "context length", "context window", "maximum context",
                    "too many tokens", "prompt is too long")

RETRY = "retry"  # try again (same or another deployment)
CONTEXT = "context"  # the prompt does not fit: only a bigger-context fallback can help
FATAL = "fatal"  # the request itself is wrong: tell the client


def classify(err: GatewayError) -> str:
    if isinstance(err, (UpstreamUnavailable, UpstreamTimeout)):
        return RETRY
    if err.status in RETRYABLE_STATUSES:
        return RETRY
    if err.status in (400, 413, 422) and is_context_error(err):
        return CONTEXT
    return FATAL


def is_context_error(err: GatewayError) -> bool:
    if err.code == "context_length_exceeded":
        return True
    text = err.message.lower()
    if isinstance(err, UpstreamHTTPError):
        text += err.raw[:4000].decode("utf-8", "replace").lower()
    return any(marker in text for marker in _CONTEXT_MARKERS)


def retry_after(err: GatewayError) -> float | None:
    """Seconds the upstream asked us to wait (`Retry-After`: seconds or an HTTP date), if it did."""
    value = err.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Backoff:
    """Exponential backoff with full jitter in [delay/2, delay], at least the upstream's Retry-After."""

    def __init__(self, config: RetryConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()

    def delay(self, retry: int, err: GatewayError | None) -> float | None:
        """How long to wait before retry number `retry` (1-based); None: the upstream wants a longer pause
        than we are willing to make the client wait."""
        cfg = self.config
        base = min(cfg.max_backoff_s, cfg.backoff_s * 2.0 ** (retry - 1))
        wait = base * (0.5 + 0.5 * self.rng.random())
        asked = retry_after(err) if err is not None else None
        if asked is not None:
            if asked > cfg.max_retry_after_s:
                return None
            wait = max(wait, asked)
        return wait
