"""The dashboard at scale: generate a ledger of 5M rows and 100k keys on PostgreSQL, then time every page.

    .venv/bin/python bench/dashboard.py generate [--rows 5000000] [--keys 100000] [--url URL] [--schema S]
    .venv/bin/python bench/dashboard.py time [--url URL] [--schema S] [--repeat 15]

`generate` creates the schema with the gateway's migrations, then fills keys, teams and the ledger with one
set-based statement each (generate_series: the rows never pass through Python), and folds the ledger into the
rollups with the same SQL the ledger writer runs on each batch (usage/rollup.py). `time` starts `llm-gateway` on
that schema, signs in with the master key and prints each page's server time (median and worst of `--repeat`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from llm_gateway.db.engine import Timeouts, make_engine, upgrade
from llm_gateway.usage.rollup import fold

MASTER = "mk-bench-dashboard"
DAY_MS = 86_400_000
MODELS = ["gpt-4o", "gpt-4o-mini", "o3-mini", "claude-sonnet-4", "claude-haiku-4", "gemini-2.5-flash",
          "gemini-2.5-pro", "llama-3.1-70b"]
PROVIDERS = ["openai", "openai", "openai", "anthropic", "anthropic", "gemini", "gemini", "local"]


def schema_url(url: str, schema: str) -> str:
    return f"{url}?options=-csearch_path%3D{schema}"


def generate(url: str, schema: str, rows: int, keys: int) -> None:
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = make_engine(schema_url(url, schema), Timeouts(statement_s=0))
    upgrade(engine)
    now = int(time.time() * 1000)
    models = "array[" + ", ".join(f"'{m}'" for m in MODELS) + "]"
    providers = "array[" + ", ".join(f"'{p}'" for p in PROVIDERS) + "]"
    steps = [
        ("teams", f"insert into gw_teams (id, name, budget_usd, budget_period, metadata, created_at, updated_at) "
                  f"select 'team_' || i, 'Team ' || i, 1000, 'monthly', '{{}}', {now}, {now} "
                  f"from generate_series(0, 199) i"),
        ("users", f"insert into gw_users (id, email, team_id, budget_period, metadata, created_at, updated_at) "
                  f"select 'user_' || i, 'user' || i || '@example.com', 'team_' || (i % 200), 'total', '{{}}', "
                  f"{now}, {now} from generate_series(0, 19999) i"),
        ("keys", f"insert into gw_keys (id, key_hash, key_prefix, alias, user_id, team_id, budget_period, "
                 f"rpm_limit, metadata, blocked, created_at, updated_at) "
                 f"select 'key_' || i, md5('k' || i) || md5('h' || i), 'sk-' || left(md5('p' || i), 8), "
                 f"'key ' || i, 'user_' || (i % 20000), 'team_' || (i % 200), 'total', 600, '{{}}', false, "
                 f"{now}, {now} from generate_series(0, {keys - 1}) i"),
        # Keys drawn with a skew (a few keys make most requests, as in life); times over the last 30 days.
        ("ledger", f"insert into gw_usage (ts, request_id, key_id, user_id, team_id, model, provider, deployment, "
                   f"endpoint, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_usd, "
                   f"latency_ms, ttft_ms, status, cache_hit, estimated, upstream_model, price_source) "
                   f"select ts, 'req_' || n, 'key_' || k, 'user_' || (k % 20000), 'team_' || (k % 200), "
                   f"({models})[m + 1], ({providers})[m + 1], ({providers})[m + 1] || '/' || ({models})[m + 1], "
                   f"'chat/completions', p, c, 0, 0, (p * 2.5 + c * 10) / 1e6, 200 + r * 800, 80 + r * 200, "
                   f"case when r < 0.02 then 429 when r < 0.025 then 500 else 200 end, r > 0.9, false, "
                   f"({models})[m + 1], 'bench' "
                   f"from (select n, {now} - floor(random() * 30 * {DAY_MS})::bigint as ts, "
                   f"floor({keys} * power(random(), 3))::int as k, floor(random() * {len(MODELS)})::int as m, "
                   f"(50 + random() * 2000)::int as p, (10 + random() * 800)::int as c, random() as r "
                   f"from generate_series(1, {rows}) n) g"),
    ]
    with engine.begin() as conn:
        for name, sql in steps:
            started = time.monotonic()
            conn.execute(text(sql))
            print(f"{name}: {time.monotonic() - started:.1f} s", flush=True)
        started = time.monotonic()
        fold(conn, "gw_usage")
        print(f"rollups: {time.monotonic() - started:.1f} s", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("analyze"))
        counts = conn.execute(text("select (select count(*) from gw_usage), (select count(*) from gw_keys), "
                                   "(select count(*) from gw_usage_rollup)")).one()
    print(f"ledger rows {counts[0]:,}, keys {counts[1]:,}, rollup rows {counts[2]:,}")


def time_pages(url: str, schema: str, repeat: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    config = tmp / "gateway.yaml"
    config.write_text(f"database: {{url: '{schema_url(url, schema)}'}}\n"
                      "providers: [{name: up, type: openai-compatible, base_url: 'http://127.0.0.1:9/v1', "
                      "models: ['*']}]\n")
    port = 18_731
    env = {**os.environ, "LLM_GATEWAY_MASTER_KEY": MASTER}
    proc = subprocess.Popen([sys.executable, "-m", "llm_gateway", "--config", str(config), "--port", str(port),
                             "--host", "127.0.0.1", "--http-proxy-metrics-port", "0"], env=env,
                            stdout=(tmp / "log").open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/ui"
    try:
        with httpx.Client(timeout=60) as client:
            for _ in range(600):
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            login = client.get(f"{base}/login")
            csrf = login.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            assert client.post(f"{base}/login", data={"csrf": csrf, "secret": MASTER}).status_code == 303
            pages = ["/", "/chart.json?range=7d", "/chart.json?range=30d&split=team",
                     "/chart.json?range=24h&split=key&metric=requests", "/chart.json?range=30d&split=model",
                     "/keys", "/keys/key_0", "/keys/key_77", "/teams", "/teams/team_7", "/users/user_3",
                     "/logs", "/logs?key_id=key_5", "/logs?model=o3-mini&status=429", "/logs?team_id=team_9",
                     "/logs?status=404", "/providers", "/export.csv?dim=model&range=30d"]
            older = client.get(f"{base}/logs").text.split('id="older" href="', 1)[1].split('"', 1)[0]
            pages.append(older.replace("&amp;", "&").removeprefix("/ui"))
            detail = client.get(f"{base}/logs").text.split('hx-get="/ui/logs/', 1)[1].split('"', 1)[0]
            pages.append(f"/logs/{detail}")
            print("| page | median ms | worst ms |\n|---|---:|---:|")
            for page in pages:
                client.get(base + page)  # warm
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    r = client.get(base + page)
                    times.append((time.perf_counter() - started) * 1000)
                    assert r.status_code == 200, (page, r.status_code, r.text[:200])
                print(f"| `{page}` | {statistics.median(times):.1f} | {max(times):.1f} |", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["generate", "time"])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="bench_dashboard")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    if args.command == "generate":
        generate(args.url, args.schema, args.rows, args.keys)
    else:
        time_pages(args.url, args.schema, args.repeat)


if __name__ == "__main__":
    main()
