"""Key, user and team records as the hot path reads them, and how keys are made and hashed."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

BudgetPeriod = Literal["daily", "monthly", "total"]
PERIODS: tuple[str, ...] = ("daily", "monthly", "total")
KEY_PREFIX = "sk-gw-"


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a key or user token: what the database stores (keys are random, so no salt is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str = KEY_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(32)


def new_id(kind: str) -> str:
    """Ids sort by creation time, so cursor pagination by id lists oldest first."""
    return f"{kind}_{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


def now_ms() -> int:
    return int(time.time() * 1000)


def _names(names: tuple[str, ...] | None) -> list[str] | None:
    return list(names) if names is not None else None


@dataclass(slots=True)
class KeyRecord:
    """A virtual key as `ctx.key` carries it (the limits stage reads id, alias, rpm/tpm limits, user and team)."""

    id: str
    key_hash: str
    key_prefix: str
    alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    models: frozenset[str] | None = None
    budget_usd: float | None = None
    budget_period: str = "total"
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    expires_at: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    blocked: bool = False
    created_at: int = 0
    updated_at: int = 0
    # None: as the key's team allows (routing.access); a virtual key may do neither by default
    allow_overrides: bool | None = None
    allow_passthrough: bool | None = None
    guardrails: tuple[str, ...] | None = None  # guardrails this key adds to the policy's (guardrails.stage)

    def expired(self, at_ms: int) -> bool:
        return self.expires_at is not None and at_ms >= self.expires_at

    def public(self) -> dict[str, Any]:
        """The key as the admin API shows it: never the secret or its hash."""
        return {
            "id": self.id, "key_prefix": self.key_prefix, "alias": self.alias, "user_id": self.user_id,
            "team_id": self.team_id, "models": sorted(self.models) if self.models is not None else None,
            "budget_usd": self.budget_usd, "budget_period": self.budget_period, "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit, "expires_at": self.expires_at, "metadata": self.metadata,
            "blocked": self.blocked, "allow_overrides": self.allow_overrides,
            "allow_passthrough": self.allow_passthrough, "guardrails": _names(self.guardrails),
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


@dataclass(slots=True)
class Principal:
    """The master key's holder: every model, no budget, the admin API."""

    id: str = "master"
    alias: str | None = "master"
    user_id: str | None = None
    team_id: str | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    is_master: bool = True


MASTER = Principal()


@dataclass(slots=True)
class UserRecord:
    id: str
    email: str | None = None
    team_id: str | None = None
    budget_usd: float | None = None
    budget_period: str = "total"
    max_keys: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
    role: str = "user"  # or "team_admin": manages its team's keys and sees its members (keys/roles.py)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "team_id": self.team_id, "budget_usd": self.budget_usd,
                "budget_period": self.budget_period, "max_keys": self.max_keys, "metadata": self.metadata,
                "role": self.role, "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass(slots=True)
class TeamRecord:
    id: str
    name: str = ""
    budget_usd: float | None = None
    budget_period: str = "total"
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
    allow_overrides: bool = False
    allow_passthrough: bool = False
    guardrails: tuple[str, ...] | None = None  # guardrails this team's keys add to the policy's

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "budget_usd": self.budget_usd,
                "budget_period": self.budget_period, "metadata": self.metadata,
                "allow_overrides": self.allow_overrides, "allow_passthrough": self.allow_passthrough,
                "guardrails": _names(self.guardrails),
                "created_at": self.created_at, "updated_at": self.updated_at}
