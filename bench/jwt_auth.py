"""What an IdP access token costs as an API credential (`auth.jwt`), in-process, through the real AuthStage:

    .venv/bin/python bench/jwt_auth.py [--calls 200000]

It builds the gateway's accounts on a temporary SQLite database, serves a JWKS on loopback, and times
`AuthStage.identify` for: the first use of a token (JWKS fetch, RS256 signature, claims, user and team sync in the
database), a new token of a known user (signature, claims, sync; the JWKS is cached), every later use of a token
(the validated-token cache), and a virtual key with and without `auth.jwt` configured (what the JWT branch costs
requests that do not use it).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sso.idp import JwksServer, token

from llm_gateway.keys.accounts import build_accounts
from llm_gateway.routing.access import Policy
from llm_gateway.routing.catalog import Catalog
from llm_gateway.settings import GatewayConfig
from llm_gateway.sso.setup import build_sso
from llm_gateway.telemetry.metrics import Registry

MASTER = "mk-bench-jwt"


def per_call_us(fn: object, calls: int) -> float:
    async def loop() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            await fn()  # type: ignore[operator]
        return (time.perf_counter() - start) / calls * 1e6
    return asyncio.get_event_loop().run_until_complete(loop())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    idp = JwksServer().start()
    key = idp.add_rsa("bench")
    tmp = tempfile.mkdtemp()
    results: dict[str, float] = {}
    for jwt_on in (False, True):
        config = GatewayConfig.model_validate({
            "auth": {"master_key": MASTER, "jwt": [{"issuer": idp.url, "audience": "gw", "jwks_url": idp.url + "/jwks"}]
                     if jwt_on else []},
            "sso": {"group_mapping": {"eng": "team_eng"}},
            "database": {"url": f"sqlite:///{tmp}/bench-{jwt_on}.db"}})
        accounts = build_accounts(config, Registry(1000), Policy(Catalog({}, {})))
        if jwt_on:
            build_sso(config, accounts)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(accounts.start())
        secret, record = accounts.store.create_key({"alias": "bench"})
        accounts.put_key(record)
        stage = accounts.auth_stage
        vk = {"authorization": f"Bearer {secret}"}
        results[f"virtual key, auth.jwt {'on' if jwt_on else 'off'}"] = statistics.median(
            per_call_us(lambda s=stage, h=vk: s.identify(h), args.calls) for _ in range(3))
        if jwt_on:
            firsts, news = [], []
            for i in range(20):
                t0 = time.perf_counter()
                loop.run_until_complete(stage.identify({"authorization": "Bearer " + token(
                    key, iss=idp.url, aud="gw", sub=f"user-{i}", groups=["eng"])}))
                firsts.append((time.perf_counter() - t0) * 1e6)
                t0 = time.perf_counter()
                loop.run_until_complete(stage.identify({"authorization": "Bearer " + token(
                    key, iss=idp.url, aud="gw", sub=f"user-{i}", groups=["eng"], jti="2")}))
                news.append((time.perf_counter() - t0) * 1e6)
            results["first token of a new user (sync creates the user)"] = statistics.median(firsts[1:])
            results["new token of a known user (signature, claims, sync)"] = statistics.median(news)
            results["first token ever (JWKS fetch included)"] = firsts[0]
            cached = {"authorization": "Bearer " + token(key, iss=idp.url, aud="gw", sub="user-0", groups=["eng"])}
            loop.run_until_complete(stage.identify(cached))
            results["a token already validated (every later call)"] = statistics.median(
                per_call_us(lambda s=stage, h=cached: s.identify(h), args.calls) for _ in range(3))
        loop.run_until_complete(accounts.stop())
        loop.close()
    idp.stop()
    width = max(map(len, results))
    for name, us in results.items():
        print(f"{name:<{width}}  {us:10.2f} µs")


if __name__ == "__main__":
    main()
