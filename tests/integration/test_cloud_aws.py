"""Bedrock without keys, through the real gateway: botocore's credential chain (container credentials, web
identity, a profile on instance metadata, `role_arn`), SigV4 with the keys it found, refresh off the request
path, and a chain that finds nothing.

AWS's side is tests/clouds/aws.py on loopback, reached through botocore's own settings:
`AWS_CONTAINER_CREDENTIALS_FULL_URI`, `AWS_ENDPOINT_URL_STS`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`, and a shared
config file (`AWS_CONFIG_FILE`) with the profiles.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from tests.clouds.aws import CONTAINER_TOKEN, WEB_IDENTITY_TOKEN, AwsCloud, make_app
from tests.clouds.thread import AppThread
from tests.conftest import GatewayProcess, launch

LIFETIME = 4  # seconds the container credentials live: refreshes happen while the tests run
DELAY = 0.8  # seconds the container endpoint takes: a request that waited for it would show it
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
ROLE = "arn:aws:iam::123456789012:role/bedrock-invoker"


@pytest.fixture(scope="module")
def cloud() -> Iterator[AwsCloud]:
    state = AwsCloud(lifetimes={"container": LIFETIME}, delays={"container": DELAY})
    server = AppThread(make_app(state)).start()
    state.url = server.url
    yield state
    server.stop()


def _clean_env(cloud: AwsCloud) -> dict[str, str]:
    """Whatever the machine running the tests has set must not decide which credentials are found."""
    env = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                           "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
                           "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                           "AWS_EC2_METADATA_DISABLED", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
           if k in os.environ}
    return {**env, "AWS_ENDPOINT_URL_STS": f"{cloud.url}/sts/", "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"{cloud.url}/",
            "AWS_METADATA_SERVICE_TIMEOUT": "2", "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "1"}


@pytest.fixture(scope="module")
def gateway(cloud: AwsCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("aws")
    (tmp / "web-identity-token").write_text(WEB_IDENTITY_TOKEN)
    (tmp / "config").write_text(
        "[default]\nregion = us-east-1\n\n"
        f"[profile irsa]\nrole_arn = arn:aws:iam::123456789012:role/irsa-role\n"
        f"web_identity_token_file = {tmp / 'web-identity-token'}\n\n"
        "[profile instance]\nrole_arn = arn:aws:iam::123456789012:role/from-instance\n"
        "credential_source = Ec2InstanceMetadata\n")
    (tmp / "credentials").write_text("")
    bedrock = {"type": "bedrock", "base_url": cloud.url}
    config = {"providers": [
        {**bedrock, "name": "aws-container", "options": {"region": "us-east-1"},
         "models": [{"name": "container", "model": MODEL}]},
        {**bedrock, "name": "aws-irsa", "options": {"region": "us-east-1", "profile": "irsa"},
         "models": [{"name": "irsa", "model": MODEL}]},
        {**bedrock, "name": "aws-assumed", "options": {"region": "us-east-1", "profile": "irsa", "role_arn": ROLE,
                                                        "role_session_name": "gw-test"},
         "models": [{"name": "assumed", "model": MODEL}]},
        {**bedrock, "name": "aws-instance", "options": {"region": "us-east-1", "profile": "instance"},
         "models": [{"name": "instance", "model": MODEL}]},
        {**bedrock, "name": "aws-missing", "options": {"region": "us-east-1", "profile": "no-such-profile"},
         "models": [{"name": "missing", "model": MODEL}]},
    ]}
    env = {**_clean_env(cloud), "AWS_CONFIG_FILE": str(tmp / "config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "credentials"),
           "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{cloud.url}/container-credentials",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": CONTAINER_TOKEN}
    gw = launch([], tmp, env=env, config=config)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)


def _ask(client: openai.OpenAI, model: str) -> str:
    out = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    return out.choices[0].message.content or ""


def test_container_credentials(client: openai.OpenAI, cloud: AwsCloud) -> None:
    assert _ask(client, "container") == "Hello from Bedrock"
    last = cloud.bedrock_calls[-1]
    assert last["source"] == "container"  # signed with keys the container endpoint handed out
    assert last["path"] == f"/model/{MODEL}/converse"


def test_web_identity(client: openai.OpenAI, cloud: AwsCloud) -> None:
    assert _ask(client, "irsa") == "Hello from Bedrock"
    assert cloud.bedrock_calls[-1]["source"] == "web-identity"
    web = [c for c in cloud.calls if c.get("action") == "AssumeRoleWithWebIdentity"]
    assert web and web[0]["role"] == "arn:aws:iam::123456789012:role/irsa-role"


def test_role_arn_assumed_with_the_chains_credentials(client: openai.OpenAI, cloud: AwsCloud) -> None:
    assert _ask(client, "assumed") == "Hello from Bedrock"
    assert cloud.bedrock_calls[-1]["source"] == f"assume-role:{ROLE}"
    assumed = [c for c in cloud.calls if c.get("action") == "AssumeRole" and c["role"] == ROLE]
    # STS checked the AssumeRole request's signature: made with the web identity's keys
    assert assumed and assumed[0]["signed_by"] == "web-identity" and assumed[0]["session"] == "gw-test"


def test_instance_metadata_v2(client: openai.OpenAI, cloud: AwsCloud) -> None:
    assert _ask(client, "instance") == "Hello from Bedrock"
    assert cloud.bedrock_calls[-1]["source"] == "assume-role:arn:aws:iam::123456789012:role/from-instance"
    assert cloud.imds_tokens  # IMDSv2: a session token first, then the credentials with it
    assumed = [c for c in cloud.calls if c.get("role") == "arn:aws:iam::123456789012:role/from-instance"]
    assert assumed and assumed[0]["signed_by"] == "imds"


def test_refresh_before_expiry_without_a_request_waiting(client: openai.OpenAI, cloud: AwsCloud) -> None:
    fetched = sum(1 for c in cloud.calls if c["endpoint"] == "container")
    first = len(cloud.bedrock_calls)
    slowest = 0.0
    deadline = time.monotonic() + 2 * LIFETIME
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert _ask(client, "container") == "Hello from Bedrock"  # never signed with expired keys
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.05)
    used = {c["access_key"] for c in cloud.bedrock_calls[first:]}
    assert len(used) >= 3
    assert sum(1 for c in cloud.calls if c["endpoint"] == "container") - fetched >= 2
    assert slowest < DELAY


def test_no_credentials(gateway: GatewayProcess, client: openai.OpenAI) -> None:
    ready = httpx.get(f"{gateway.url}/ready").json()["providers"]
    assert ready["aws-missing"].startswith("credentials unavailable: AWS credentials: ProfileNotFound")
    assert all(ready[p] == "reachable" for p in ("aws-container", "aws-irsa", "aws-assumed", "aws-instance"))
    status = httpx.get(f"{gateway.url}/api/v1/providers/status").json()["deployments"]
    assert [d["healthy"] for d in status if d["provider"] == "aws-missing"] == [False]
    with pytest.raises(openai.APIStatusError) as err:
        _ask(client, "missing")
    assert err.value.status_code == 502
    log = gateway.log()
    assert "aws-missing: cannot obtain AWS credentials (ProfileNotFound" in log
    assert WEB_IDENTITY_TOKEN not in log and CONTAINER_TOKEN not in log


def test_irsa_from_the_environment(cloud: AwsCloud, tmp_path: Path) -> None:
    """EKS IRSA as the pod webhook sets it up: AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, no profile."""
    (tmp_path / "token").write_text(WEB_IDENTITY_TOKEN)
    env = {**_clean_env(cloud), "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/eks-pod-role",
           "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "token"), "AWS_REGION": "us-east-1",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    config = {"providers": [{"type": "bedrock", "base_url": cloud.url, "name": "aws-eks",
                             "options": {"region": "us-east-1"}, "models": [{"name": "eks", "model": MODEL}]}]}
    gw = launch([], tmp_path, env=env, config=config)
    try:
        assert _ask(openai.OpenAI(base_url=gw.v1, api_key="unused", max_retries=0), "eks") == "Hello from Bedrock"
        assert cloud.bedrock_calls[-1]["source"] == "web-identity"
        assert any(c.get("role") == "arn:aws:iam::123456789012:role/eks-pod-role" for c in cloud.calls)
    finally:
        gw.stop()
