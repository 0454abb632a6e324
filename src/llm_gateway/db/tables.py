"""The relational schema: teams, users, virtual keys and the usage ledger, as SQLAlchemy Core tables.

Times are integer epoch milliseconds: portable between SQLite and PostgreSQL, and `ts // 86_400_000` groups by
day on both without dialect-specific date functions.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

def width_of(column: Column[str]) -> int:
    return int(column.type.length)  # type: ignore[attr-defined]


def fit_text(value: str, width: int) -> str:
    """A text a client chose, as a column `width` characters wide takes it: cut, and rid of NUL, which PostgreSQL
    refuses in text (a refused row fails its whole write)."""
    if len(value) > width or "\x00" in value:
        return value.replace("\x00", "")[:width]
    return value


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a ledger that grows forever.
_ROW_ID = BigInteger().with_variant(Integer(), "sqlite")

teams = Table(
    "gw_teams", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("budget_usd", Float, nullable=True),
    Column("budget_period", String(16), nullable=False, default="total"),
    Column("metadata", Text, nullable=False, default="{}"),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("allow_overrides", Boolean, nullable=False, default=False),
    Column("allow_passthrough", Boolean, nullable=False, default=False),
    Column("guardrails", Text, nullable=True),  # migration 0008: JSON list of guardrail names, null: none
)

users = Table(
    "gw_users", metadata,
    Column("id", String(64), primary_key=True),
    Column("email", String(320), nullable=True),
    Column("team_id", String(64), nullable=True),
    Column("budget_usd", Float, nullable=True),
    Column("budget_period", String(16), nullable=False, default="total"),
    Column("max_keys", Integer, nullable=True),
    Column("token_hash", String(64), nullable=True, unique=True),
    Column("role", String(16), nullable=False, default="user"),  # user | team_admin (of its team)
    Column("metadata", Text, nullable=False, default="{}"),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_gw_users_team", "team_id"),
)

# Which teams a user belongs to (migration 0010_team_members): a user may be in several; `gw_users.team_id` is its
# primary team, one of these rows (or null when the user is in no team). No foreign keys, as for `team_id`: a
# membership may name a team that is not (yet) created, and the store keeps the rows in step on deletes.
team_members = Table(
    "gw_team_members", metadata,
    Column("user_id", String(64), primary_key=True),
    Column("team_id", String(64), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_gw_team_members_team", "team_id", "user_id"),
)

keys = Table(
    "gw_keys", metadata,
    Column("id", String(64), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_prefix", String(16), nullable=False),
    Column("alias", String(200), nullable=True),
    Column("user_id", String(64), nullable=True),
    Column("team_id", String(64), nullable=True),
    Column("models", Text, nullable=True),
    Column("budget_usd", Float, nullable=True),
    Column("budget_period", String(16), nullable=False, default="total"),
    Column("rpm_limit", Integer, nullable=True),
    Column("tpm_limit", Integer, nullable=True),
    Column("expires_at", BigInteger, nullable=True),
    Column("metadata", Text, nullable=False, default="{}"),
    Column("blocked", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("allow_overrides", Boolean, nullable=True),  # null: as the key's team allows
    Column("allow_passthrough", Boolean, nullable=True),
    Column("guardrails", Text, nullable=True),  # migration 0008: JSON list of guardrail names, null: none
    Index("ix_gw_keys_user", "user_id", "id"),
    Index("ix_gw_keys_team", "team_id", "id"),
)

usage = Table(
    "gw_usage", metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("ts", BigInteger, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("key_id", String(64), nullable=True),
    Column("user_id", String(200), nullable=True),
    Column("team_id", String(64), nullable=True),
    Column("model", String(200), nullable=False, default=""),
    Column("provider", String(100), nullable=False, default=""),
    Column("deployment", String(300), nullable=False, default=""),
    Column("endpoint", String(100), nullable=False, default=""),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("reasoning_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("ttft_ms", Float, nullable=False, default=0.0),
    Column("status", Integer, nullable=False, default=0),
    Column("cache_hit", Boolean, nullable=False, default=False),
    Column("estimated", Boolean, nullable=False, default=False),
    Column("upstream_model", String(300), nullable=False, default=""),  # the model name the deployment was sent
    Column("end_user", String(200), nullable=True),  # the `user` the client named (never the billed user)
    # added by migration 0002_prices: the token classes priced apart, and the price's source and version
    Column("cache_write_tokens", Integer, nullable=False, default=0),
    Column("cache_write_1h_tokens", Integer, nullable=False, default=0),
    Column("prompt_audio_tokens", Integer, nullable=False, default=0),
    Column("prompt_image_tokens", Integer, nullable=False, default=0),
    Column("completion_audio_tokens", Integer, nullable=False, default=0),
    Column("completion_image_tokens", Integer, nullable=False, default=0),
    Column("price_source", String(200), nullable=False, default=""),
    # added by migration 0006_metadata: the request's `x-gateway.metadata`, as JSON text (or NULL)
    Column("request_metadata", Text, nullable=True),
    # added by migration 0007_dashboard: what the request log's detail shows
    Column("trace_id", String(32), nullable=False, default=""),
    Column("error", String(300), nullable=False, default=""),  # why a request failed (429, 403, ...): code: text
    Column("attempts", Integer, nullable=False, default=0),
    Column("attempt_log", String(1000), nullable=False, default=""),  # "kind provider/model status error; ..."
    Column("guardrails", Text, nullable=True),  # migration 0008: the request's guardrail verdicts, JSON
    Index("ix_gw_usage_ts", "ts"),
    Index("ix_gw_usage_status_ts", "status", "ts"),
    Index("ix_gw_usage_key_ts", "key_id", "ts"),
    Index("ix_gw_usage_user_ts", "user_id", "ts"),
    Index("ix_gw_usage_team_ts", "team_id", "ts"),
    Index("ix_gw_usage_model_ts", "model", "ts"),
)

# One row per ledger batch, written in the batch's transaction: a retry after a commit whose answer was lost
# finds its marker and does not write the rows again (usage/ledger.py). Old markers are deleted by the ledger.
ledger_batches = Table(
    "gw_ledger_batches", metadata,
    Column("id", String(32), primary_key=True),
    Column("ts", BigInteger, nullable=False),
    Column("row_count", Integer, nullable=False),
    Index("ix_gw_ledger_batches_ts", "ts"),
)

# Stored Responses API answers (api/responses.py): the request's own input items and the whole Response object,
# as JSON; `owner` is who may read them ("team:<id>", "key:<id>", "master", "" for an open gateway).
responses = Table(
    "gw_responses", metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(200), nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("previous_response_id", String(64), nullable=True),
    Column("model", String(200), nullable=False, default=""),
    Column("input", Text, nullable=False, default="[]"),
    Column("response", Text, nullable=False, default="{}"),
    Index("ix_gw_responses_created", "created_at"),
)

# Sums of the ledger by period (hour, day, month: `bucket` is its start, epoch ms UTC) and one dimension (`all`,
# key, user, team, model, provider, status: `value` is "" for none), kept by the ledger writer (usage/rollup.py).
rollups = Table(
    "gw_usage_rollup", metadata,
    Column("period", String(5), primary_key=True),  # key order (period, dim, value, bucket): one value's series
    Column("dim", String(8), primary_key=True),
    Column("value", String(300), primary_key=True),
    Column("bucket", BigInteger, primary_key=True),
    Column("requests", BigInteger, nullable=False, default=0),
    Column("prompt_tokens", BigInteger, nullable=False, default=0),
    Column("completion_tokens", BigInteger, nullable=False, default=0),
    Column("cached_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("errors", BigInteger, nullable=False, default=0),
    Column("cache_hits", BigInteger, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False, default=0.0),  # summed: divide by requests
    # The month's top spenders. Partial: the hour and day rows, most of the upserts, do not maintain it.
    Index("ix_gw_usage_rollup_cost", "dim", "bucket", "cost_usd", postgresql_where=text("period = 'month'"),
          sqlite_where=text("period = 'month'")),
)

# Sign-ins, sign-outs, refused credentials and role or team changes (sso/audit.py); added by migration 0008_sso.
audit = Table(
    "gw_audit", metadata,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("ts", BigInteger, nullable=False),
    Column("event", String(32), nullable=False),
    Column("outcome", String(16), nullable=False, default="ok"),
    Column("method", String(16), nullable=False, default=""),
    Column("provider", String(64), nullable=False, default=""),
    Column("subject", String(320), nullable=True),
    Column("user_id", String(64), nullable=True),
    Column("detail", Text, nullable=False, default="{}"),
    Column("client_ip", String(64), nullable=True),
    Index("ix_gw_audit_ts", "ts"),
    Index("ix_gw_audit_user_ts", "user_id", "ts"),
)

# SAML assertion ids already used, until they expire: a replayed assertion is refused on every replica (sso/saml.py).
saml_assertions = Table(
    "gw_saml_assertions", metadata,
    Column("id", String(256), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_gw_saml_assertions_expires", "expires_at"),
)

# `llm-gateway login`: device authorizations waiting for a browser sign-in (sso/device.py); the device code is kept
# only as its SHA-256, and the key is made when the device collects it (never stored in the clear).
device_grants = Table(
    "gw_device_grants", metadata,
    Column("user_code", String(16), primary_key=True),
    Column("device_hash", String(64), nullable=False, unique=True),
    Column("expires_at", BigInteger, nullable=False),
    Column("user_id", String(64), nullable=True),  # set when a signed-in user approves
    Column("client_name", String(200), nullable=False, default=""),
)

# Dashboard sessions (ui/session.py; migration 0011_ui_sessions): the cookie names a row here, kept only as the
# SHA-256 of its random id. Signing out deletes the row, so a copy of the cookie stops working on every replica.
# `user_id` is null for a master-key session; deleting a user deletes its sessions (keys/store.py).
ui_sessions = Table(
    "gw_ui_sessions", metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", String(64), nullable=True),
    Column("method", String(200), nullable=False),  # "master_key", "user_token", "oidc:<provider>", ...
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),  # the absolute limit; the idle one counts from last_seen
    Index("ix_gw_ui_sessions_user", "user_id"),
    Index("ix_gw_ui_sessions_expires", "expires_at"),
)
