"""Durations and sizes as people write them in YAML: `30`, `30s`, `1m`, `1h`, `250ms`, `1h30m`; `256MB`, `1GB`."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|us|µs|ns|s|m|h|d)")
_WHOLE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*(?:ms|us|µs|ns|s|m|h|d)\s*)+$")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0,
                 "d": 86400.0}
_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_MB = {"b": 1 / 1048576, "kb": 1 / 1024, "kib": 1 / 1024, "mb": 1.0, "mib": 1.0, "gb": 1024.0,
            "gib": 1024.0}


def parse_duration(value: float | str) -> float:
    """Seconds of `30`, `"30s"`, `"1m"`, `"1h"`, `"1d"`, `"250ms"` and Go's compound `"1h30m"`."""
    if isinstance(value, int | float):
        return float(value)
    if _NUMBER.match(value):
        return float(value)
    if not _WHOLE.match(value):
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 1m, 1h, 1d)")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(value))


def is_duration(value: object) -> bool:
    return isinstance(value, str) and bool(_WHOLE.match(value))


def parse_size_mb(value: str) -> float | None:
    """Mebibytes of `256MB`, `1GB`, `512kb`; None when it is not a size."""
    match = _SIZE.match(value)
    if not match or match.group(2) is None:
        return None
    return float(match.group(1)) * _SIZE_MB[match.group(2).lower()]
