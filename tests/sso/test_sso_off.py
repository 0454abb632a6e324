"""With no `sso` and no `auth.jwt`, the gateway loads none of the SSO libraries and its auth stage has no JWT
branch; with `auth.jwt` the stage gets one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from llm_gateway.app import create_app
from llm_gateway.keys.auth import AuthStage
from llm_gateway.settings import GatewayConfig

CHECK = """
import sys
from llm_gateway.app import create_app
from llm_gateway.settings import GatewayConfig
gw = create_app(GatewayConfig.model_validate({"auth": {"master_key": "mk"}, "database": {"url": "sqlite:///%s"}}))
loaded = [m for m in ("joserfc", "authlib", "saml2", "defusedxml", "llm_gateway.sso.setup") if m in sys.modules]
print(loaded)
"""


def test_sso_off_loads_no_sso_library(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", CHECK % (tmp_path / "a.db")], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_auth_jwt_adds_the_branch(tmp_path: Path) -> None:
    off = create_app(GatewayConfig.model_validate({"auth": {"master_key": "mk"},
                                                   "database": {"url": f"sqlite:///{tmp_path}/b.db"}}))
    on = create_app(GatewayConfig.model_validate({
        "auth": {"master_key": "mk", "jwt": [{"issuer": "https://idp.example.com", "audience": "gw"}]},
        "database": {"url": f"sqlite:///{tmp_path}/c.db"}}))
    assert off.pipeline.stages and all(not isinstance(s, AuthStage) or s.jwt is None for s in off.pipeline.stages)
    assert any(isinstance(s, AuthStage) and s.jwt is not None for s in on.pipeline.stages)
