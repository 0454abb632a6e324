"""PostgreSQL connections are bounded: the server applies the statement, idle-in-transaction and keepalive
settings the gateway sends, beside the URL's own `options`; `statement_timeout_s: 0` sends none of them."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from llm_gateway.db.engine import Timeouts, make_engine, pg_connect_args


def test_no_options_are_sent_without_a_statement_timeout() -> None:
    args = pg_connect_args(None, Timeouts(connect_s=1.5, statement_s=0))
    assert "options" not in args and "tcp_user_timeout" not in args
    assert args["connect_timeout"] == 2 and args["keepalives"] == 1
    assert pg_connect_args("-csearch_path=x", Timeouts(statement_s=0))["options"] == "-csearch_path=x"


def test_the_server_applies_the_timeouts_and_keeps_the_urls_options() -> None:
    schema = f"test_timeouts_{uuid.uuid4().hex[:8]}"
    engine = make_engine(f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}",
                         Timeouts(connect_s=2, statement_s=1.5))
    try:
        with engine.connect() as conn:
            shown = {name: conn.execute(text(f"SHOW {name}")).scalar() for name in (
                "statement_timeout", "idle_in_transaction_session_timeout", "tcp_keepalives_idle", "search_path")}
    except Exception as exc:
        pytest.skip(f"PostgreSQL is not available: {exc}")
    finally:
        engine.dispose()
    assert shown == {"statement_timeout": "1500ms", "idle_in_transaction_session_timeout": "1500ms",
                     "tcp_keepalives_idle": "10", "search_path": schema}
