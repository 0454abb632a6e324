"""The admin API's request and response models: they validate input and generate the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Bounds a column can hold on every database: 32-bit integers, epoch ms up to year 9999, no NUL in text.
MAX_INT32 = 2**31 - 1
MAX_EPOCH_MS = 253_402_300_799_999
MAX_EXPIRES_IN_S = 100 * 365 * 86_400


def _encodable(value: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates (which JSON's \\ud800 escapes can produce)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    value.encode("utf-8")  # UnicodeEncodeError is a ValueError: pydantic reports it as a 422
    return value


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    """What the store can write: no lone surrogate, no integer beyond 64 bits (orjson refuses both)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot be stored: {exc}") from None
    return value


_NO_NUL = r"^[^\x00]+$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_NO_NUL), AfterValidator(_encodable)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NO_NUL), AfterValidator(_encodable)]
Email = Annotated[str, StringConstraints(min_length=1, max_length=320, pattern=_NO_NUL), AfterValidator(_encodable)]
Budget = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=MAX_INT32)]
EpochMs = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS, description="epoch ms")]
Period = Literal["daily", "monthly", "total"]
Role = Literal["user", "team_admin"]  # a team admin manages its team's keys (keys/roles.py)
Metadata = Annotated[dict[str, Any], AfterValidator(_json_object)]
GuardrailNames = Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_NO_NUL)]],
                           Field(max_length=100)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class KeyInput(_Input):
    """A key's fields; `expires_in_s` is turned into `expires_at`."""

    alias: Name | None = None
    user_id: Id | None = None
    team_id: Id | None = None
    models: Annotated[list[Name], Field(max_length=1000)] | None = Field(None, description="null: every model")
    budget_usd: Budget | None = None
    budget_period: Period = "total"
    rpm_limit: Count | None = None
    tpm_limit: Count | None = None
    expires_at: EpochMs | None = None
    expires_in_s: Annotated[float, Field(ge=0, le=MAX_EXPIRES_IN_S, allow_inf_nan=False)] | None = Field(
        None, description="seconds from now (at most 100 years); wins over expires_at")
    metadata: Metadata = Field(default_factory=dict)
    blocked: bool = False
    allow_overrides: bool | None = Field(None, description="x-gateway fallbacks, provider, hedge and retries; "
                                         "null: as the key's team allows")
    allow_passthrough: bool | None = Field(None, description="/v1/* paths the gateway passes through; null: as "
                                           "the key's team allows")
    guardrails: GuardrailNames | None = Field(None, description="guardrails added to the policy's for this key")


class MyKeyInput(_Input):
    """What a user may set on its own keys: the owner and limits come from the admin, the team is one of the user's."""

    alias: Name | None = None
    team_id: Id | None = Field(None, description="one of your teams (GET /api/v1/me/teams); default: your primary "
                               "team. Any other team: 403 not_a_member")
    models: Annotated[list[Name], Field(max_length=1000)] | None = None
    budget_usd: Budget | None = None
    budget_period: Period = "total"
    expires_at: EpochMs | None = None
    expires_in_s: Annotated[float, Field(ge=0, le=MAX_EXPIRES_IN_S, allow_inf_nan=False)] | None = None
    metadata: Metadata = Field(default_factory=dict)


TEAM_ID = "the user's primary team, one of its teams (the default for its new keys; a team admin manages it)"


class UserInput(_Input):
    id: Id | None = None
    email: Email | None = None
    team_id: Id | None = Field(None, description="the user's first team, which becomes its primary team")
    budget_usd: Budget | None = None
    budget_period: Period = "total"
    max_keys: Count | None = Field(None, description="self-service keys this user may hold")
    role: Role = "user"
    metadata: Metadata = Field(default_factory=dict)


class UserChange(_Input):
    email: Email | None = None
    team_id: Id | None = Field(None, description="moves the user from its primary team to this one (its other "
                               "teams stay; keys held through the team it leaves are blocked). To change only which "
                               "team is primary, use PUT /api/v1/users/{id}/teams")
    budget_usd: Budget | None = None
    budget_period: Period = "total"
    max_keys: Count | None = None
    role: Role = "user"
    metadata: Metadata = Field(default_factory=dict)


class TeamInput(_Input):
    id: Id | None = None
    name: Name | None = None
    budget_usd: Budget | None = None
    budget_period: Period = "total"
    metadata: Metadata = Field(default_factory=dict)
    allow_overrides: bool = False
    allow_passthrough: bool = False
    guardrails: GuardrailNames | None = Field(None, description="guardrails added to the policy's for the team")


class TeamChange(_Input):
    name: Name | None = None
    budget_usd: Budget | None = None
    budget_period: Period = "total"
    metadata: Metadata = Field(default_factory=dict)
    allow_overrides: bool | None = None
    allow_passthrough: bool | None = None
    guardrails: GuardrailNames | None = None


class Key(BaseModel):
    id: str
    key_prefix: str
    alias: str | None
    user_id: str | None
    team_id: str | None
    models: list[str] | None
    budget_usd: float | None
    budget_period: str
    rpm_limit: int | None
    tpm_limit: int | None
    expires_at: int | None
    metadata: dict[str, Any]
    blocked: bool
    allow_overrides: bool | None = None
    allow_passthrough: bool | None = None
    guardrails: list[str] | None = None
    created_at: int = Field(description="epoch ms")
    updated_at: int


class NewKey(Key):
    key: str = Field(description="the secret: only in the answers to create and rotate")


class KeyWithSpend(Key):
    spent_usd: float | None = Field(description="spend in the budget's current period; null without a budget")


class UserTeamsInput(_Input):
    """The user's teams, exactly: teams it leaves block the keys it holds through them."""

    teams: Annotated[list[Id], Field(max_length=1000)] = Field(description="existing team ids")
    team_id: Id | None = Field(None, description="the primary team, one of `teams`; default: the current primary "
                               "team while it is one of them, else the first of `teams`")


class UserTeams(BaseModel):
    user_id: str
    team_id: str | None = Field(description=TEAM_ID)
    teams: list[str] = Field(description="every team the user is in, the primary team first")
    blocked_keys: list[str] = Field(default_factory=list, description="keys blocked by this change (PUT)")


class User(BaseModel):
    id: str
    email: str | None
    team_id: str | None = Field(description=TEAM_ID)
    teams: list[str] = Field(default_factory=list, description="every team the user is in, the primary team first")
    budget_usd: float | None
    budget_period: str
    max_keys: int | None
    metadata: dict[str, Any]
    role: str
    created_at: int
    updated_at: int


class NewUser(User):
    token: str = Field(description="the user's self-service token: only in the answer to create")


class NewUserToken(BaseModel):
    user_id: str
    token: str = Field(description="the user's new self-service token, shown once; the old one no longer works, "
                       "nor do the dashboard sessions it opened")


class Team(BaseModel):
    id: str
    name: str
    budget_usd: float | None
    budget_period: str
    metadata: dict[str, Any]
    allow_overrides: bool = False
    allow_passthrough: bool = False
    guardrails: list[str] | None = None
    created_at: int
    updated_at: int


class _Page(BaseModel):
    object: Literal["list"] = "list"
    has_more: bool
    next_cursor: str | None


class KeyList(_Page):
    data: list[Key]


class UserList(_Page):
    data: list[User]


class TeamList(_Page):
    data: list[Team]


class Deleted(BaseModel):
    id: str
    deleted: bool


class UserDeleted(Deleted):
    revoked_keys: int = Field(description="the user's keys deleted with it (cascade=true)")


class TeamDeleted(Deleted):
    revoked_keys: int = Field(description="the team's keys deleted with it (cascade=true)")


class Totals(BaseModel):
    total_requests: int
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int
    total_cost: float
    cache_hits: int
    cache_misses: int
    errors: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    unpriced_requests: int = Field(0, description="requests with usage whose price is unknown, recorded at $0")


class UsageReport(BaseModel):
    start: int
    end: int
    total_requests: int = Field(description="as totals.total_requests (the Go seed's shape)")
    total_tokens: int
    total_cost: float
    cache_hits: int
    cache_misses: int
    totals: Totals
    group_by: str | None = None
    groups: list[dict[str, Any]] | None = Field(None, description="totals per group, with the group's value")


class BudgetSpend(BaseModel):
    kind: str
    id: str
    budget_usd: float | None
    period: str
    spent_usd: float
    reserved_usd: float
    period_start: int


class SpendList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BudgetSpend]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    price_database: str = Field(description="the bundled price database and its version")
    wildcard_providers: list[str]


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None
    param: str | None


class ErrorBody(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {"default": {"model": ErrorBody, "description": "an error"}}
