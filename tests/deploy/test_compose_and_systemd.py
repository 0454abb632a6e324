"""docker-compose.yaml against the Compose specification's schema (shipped in check-jsonschema: offline) and its
gateway config through `config check`; the systemd unit through `systemd-analyze verify` and its security score."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from llm_gateway.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
UNIT = ROOT / "deploy" / "systemd" / "llm-gateway.service"


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_compose_file_is_valid_and_starts_the_stack_in_order() -> None:
    checked = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                  str(ROOT / "docker-compose.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "postgres", "migrate", "gateway"}
    gateway, migrate = services["gateway"], services["migrate"]
    assert gateway["image"] == migrate["image"] and "build" in migrate
    assert gateway["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert gateway["read_only"] is True and gateway["cap_drop"] == ["ALL"]
    args = build_parser().parse_args(migrate["command"])  # the migrate step is a command the CLI has
    assert (args.command, args.db_command) == ("db", "upgrade")
    config = ROOT / "deploy" / "compose" / "gateway.yaml"
    assert any(v.endswith(":/etc/llm-gateway/gateway.yaml:ro") and v.startswith("./" + str(config.relative_to(ROOT)))
               for v in gateway["volumes"])
    checked = run(sys.executable, "-m", "llm_gateway", "config", "check", str(config))
    assert checked.returncode == 0, checked.stderr
    assert yaml.safe_load(config.read_text())["database"]["migrate_on_start"] is False


def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this install of the same console script.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/llm-gateway/bin/llm-gateway", str(BIN / "llm-gateway")))
    verified = run("systemd-analyze", "verify", str(unit))
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr
    security = run("systemd-analyze", "security", "--offline=yes", "--threshold=20", "--no-pager", str(unit))
    assert security.returncode == 0, security.stdout[-2000:]
    assert "EnvironmentFile=-/etc/llm-gateway/env" in UNIT.read_text()
