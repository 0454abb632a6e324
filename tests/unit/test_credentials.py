"""providers/credentials.py: when refreshes happen, what a failed one leaves, what the request path reads;
and which providers get a refresher (the cloud identities) and how their deployments are priced."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llm_gateway.providers.credentials import CredentialUnavailable, Issued, Refresher
from llm_gateway.providers.registry import build_provider
from llm_gateway.routing.catalog import Catalog
from llm_gateway.settings import ProviderConfig
from llm_gateway.usage.price_db import GenaiPrices
from llm_gateway.usage.pricing import PriceBook


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Fetch:
    """Hands out numbered values living `life` seconds, or raises what `fail` holds."""

    def __init__(self, clock: Clock, life: float | None) -> None:
        self.clock = clock
        self.life = life
        self.fail: Exception | None = None
        self.count = 0
        self.threads: set[str] = set()

    def __call__(self) -> Issued[str]:
        self.threads.add(threading.current_thread().name)
        if self.fail is not None:
            raise self.fail
        self.count += 1
        return Issued(f"value-{self.count}", None if self.life is None else self.clock() + self.life)


async def test_refresh_is_due_before_expiry_and_runs_in_a_worker_thread() -> None:
    clock = Clock()
    fetch = Fetch(clock, 3600)
    refresher = Refresher("p", "test credentials", fetch, margin=300, clock=clock)
    assert await refresher._refresh() == 3300  # an hour-long token: refreshed five minutes before it expires
    assert refresher.current() == "value-1" and refresher.status() is None
    assert threading.current_thread().name not in fetch.threads  # never on the event loop's thread
    fetch.life = 8
    assert await refresher._refresh() == 4  # shorter than twice the margin: half-way through its life
    fetch.life = 0.2
    assert await refresher._refresh() == 0.5  # never more often than SOONEST_S
    fetch.life = None
    assert await refresher._refresh() == 3600  # keys that never expire: looked at again hourly


async def test_a_failed_refresh_keeps_the_value_until_it_expires_and_backs_off() -> None:
    clock = Clock()
    fetch = Fetch(clock, 60)
    refresher = Refresher("p", "test credentials", fetch, margin=300, clock=clock)
    await refresher._refresh()
    fetch.fail = ConnectionError("token endpoint down " + "x" * 300)
    delays = [await refresher._refresh() for _ in range(7)]
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert refresher.current() == "value-1"  # still valid: requests go on
    problem = refresher.status()
    assert problem is not None and problem.startswith("cannot be refreshed: test credentials: ConnectionError: "
                                                      "token endpoint down")
    assert problem.endswith("…; the current ones expire in 60s")  # a library's long message is cut
    assert len(problem) < 300
    clock.now += 61
    assert (refresher.status() or "").startswith("unavailable: test credentials: ConnectionError")
    with pytest.raises(CredentialUnavailable) as err:
        refresher.current()
    assert err.value.message == "provider 'p' has no valid credentials"  # why stays out of client errors
    fetch.fail = None
    assert await refresher._refresh() == 30  # recovered: the schedule of a fresh 60 s value
    assert refresher.current() == "value-2" and refresher.status() is None


async def test_start_does_not_wait_forever_and_stop_ends_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("llm_gateway.providers.credentials.FIRST_FETCH_TIMEOUT_S", 0.2)
    release = threading.Event()
    clock = Clock()
    inner = Fetch(clock, 3600)

    def slow() -> Issued[str]:
        release.wait(5)
        return inner()

    refresher = Refresher("p", "slow credentials", slow, clock=clock)
    await refresher.start()  # gives up waiting after 0.2 s; the fetch goes on in the background
    assert refresher.issued is None and "still trying" in (refresher.status() or "")
    release.set()
    for _ in range(100):
        if refresher.issued is not None:
            break
        await asyncio.sleep(0.02)
    assert refresher.current() == "value-1" and refresher.status() is None
    await refresher.stop()
    assert refresher._task is None


def test_which_providers_keep_credentials_fresh() -> None:
    def provider(**config: object) -> object:
        return build_provider(ProviderConfig.model_validate({"name": "p", "models": ["m"], **config}))

    keys = {"region": "eu-west-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret"}
    assert provider(type="bedrock", options=keys).refresher is None  # type: ignore[attr-defined]
    assert provider(type="bedrock", api_key="bedrock-api-key").refresher is None  # type: ignore[attr-defined]
    chain = provider(type="bedrock", options={"region": "eu-west-1", "role_arn": "arn:aws:iam::1:role/r"})
    assert chain.refresher.what == "AWS credentials (role arn:aws:iam::1:role/r)"  # type: ignore[attr-defined]
    azure = {"type": "azure", "base_url": "https://r.openai.azure.com"}
    assert provider(**azure, api_key="k").refresher is None  # type: ignore[attr-defined]
    assert provider(**azure, auth="entra").refresher is not None  # type: ignore[attr-defined]
    assert provider(type="vertex", options={"project": "p1"}).refresher is not None  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"auth 'entra' is not available for type 'openai'"):
        provider(type="openai", auth="entra")
    aliased = provider(type="vertex", options={"vertex_project": "p2", "vertex_location": "europe-west4"})
    assert aliased.origin.host == "europe-west4-aiplatform.googleapis.com"  # type: ignore[attr-defined]
    assert aliased._prefix == "/v1/projects/p2/locations/europe-west4/publishers"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"vertex needs options\.project"):
        provider(type="vertex")


def test_vertex_deployments_are_priced() -> None:
    config = ProviderConfig.model_validate({"name": "vx", "type": "vertex", "options": {"project": "p1"}, "models": [
        "gemini-2.5-flash", "claude-sonnet-4-5@20250929", "gemini-embedding-001"]})
    vertex = build_provider(config)
    catalog = Catalog({"vx": vertex}, {})
    book = PriceBook(GenaiPrices())
    prices = {dep.model: book.for_deployment(dep) for dep in catalog.deployments.values()}
    assert all(p is not None for p in prices.values()), prices
    claude = prices["claude-sonnet-4-5@20250929"]
    assert claude is not None and (claude.price.input, claude.price.output) == pytest.approx((3e-6, 15e-6))
    flash = prices["gemini-2.5-flash"]
    assert flash is not None and flash.price.output == pytest.approx(2.5e-6)


def test_config_check_names_what_a_provider_type_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llm_gateway.cli import config_check

    path = tmp_path / "gw.yaml"
    path.write_text("providers:\n  - {name: vx, type: vertex, options: {location: us-east5}, models: [m]}\n")
    assert config_check(str(path), {}) == 1
    assert "providers.vx: vertex needs options.project" in capsys.readouterr().err
    path.write_text("providers:\n  - {name: vx, type: vertex, options: {project: p1}, models: [m]}\n")
    assert config_check(str(path), {}) == 0


CLOUD_LIBRARIES = ("botocore", "google.auth", "azure", "msal", "requests")


def _loaded_after_create_app(tmp_path: Path, providers: list[dict[str, object]]) -> list[str]:
    code = ("import sys\nfrom llm_gateway.app import create_app\nfrom llm_gateway.settings import parse_config\n"
            f"create_app(parse_config({{'database': {{'url': 'sqlite:///{tmp_path}/g.db'}}, "
            f"'providers': {providers!r}}}, env={{}}))\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules if m.startswith({CLOUD_LIBRARIES!r})}}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    return list(ast.literal_eval(out.stdout.strip()))


def test_cloud_libraries_are_imported_only_when_configured(tmp_path: Path) -> None:
    static = [{"name": "aws", "type": "bedrock", "models": ["m"],
               "options": {"region": "eu-west-1", "access_key_id": "AKID", "secret_access_key": "s"}},
              {"name": "az", "type": "azure", "base_url": "https://r.openai.azure.com", "api_key": "k",
               "models": ["m"]}]
    assert _loaded_after_create_app(tmp_path, static) == []  # keys in the config: no cloud library at all
    vertex = [{"name": "vx", "type": "vertex", "options": {"project": "p1"}, "models": ["m"]}]
    assert "google" in _loaded_after_create_app(tmp_path, vertex)
