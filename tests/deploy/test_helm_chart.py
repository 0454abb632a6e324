"""The Helm chart, linted and rendered offline with Helm's own Go SDK (helm-python-sdk), every rendered manifest
validated strictly against the Kubernetes schemas that kubernetes-validate ships (nothing is fetched), and the
rendered gateway config loaded by the gateway itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from llm_gateway.settings import parse_config

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "llm-gateway"
KUBE = "1.30.0"  # the oldest Kubernetes still supported upstream when this was written; the chart needs >= 1.25
PG_URL = "postgresql://gw:${POSTGRES_PASSWORD}@pg.example:5432/gw"
CASES: dict[str, dict[str, Any] | None] = {
    "defaults": None,
    "everything on": {"autoscaling": {"enabled": True}, "serviceMonitor": {"enabled": True},
                      "redis": {"enabled": True}, "postgresql": {"enabled": True},
                      "secretEnv": {"OPENAI_API_KEY": "sk-test"}, "networkPolicy": {
                          "ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "apps"}}}]}},
    "external postgres, migration job": {"config": {"database": {"url": PG_URL}, "redis": {
        "sentinel": {"master_name": "gw", "nodes": ["sentinel-0:26379", "sentinel-1:26379"]}}},
        "secretEnv": {"POSTGRES_PASSWORD": "pw", "OPENAI_API_KEY": "sk-test"}},
    "existing ConfigMap and Secret": {"existingConfigMap": "gw-config", "existingSecret": "gw-secrets"},
}


def render(values: dict[str, Any] | None) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name="gw", namespace="ai", is_install=True)
    return [doc for name, text in files.items() if name.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("case", list(CASES))
def test_lint_strict_and_manifests_valid(case: str) -> None:
    values = CASES[case]
    report = helm.lint(str(CHART), values, strict=True, with_subcharts=True, kube_version=f"v{KUBE}")
    assert not report["errors"] and not [m for m in report["messages"] if m["severity"] >= 2], report
    docs = render(values)
    assert docs
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":  # a CRD of the Prometheus Operator: no built-in schema
            service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "gw-llm-gateway")
            assert doc["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
            continue
        kubernetes_validate.validate(doc, KUBE, strict=True)  # raises with the path of the first problem


def test_pods_are_hardened_and_probed() -> None:
    docs = render(CASES["external postgres, migration job"])
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/etc/llm-gateway", "/tmp", "/data"}
    (job,) = by_kind(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    # The Job's pod is not one of the gateway's: the Service, PDB and NetworkPolicy do not select it.
    selector = deployment["spec"]["selector"]["matchLabels"]
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= job_labels.items()
    hooks = [d for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    assert {d["kind"] for d in hooks} == {"ConfigMap", "Secret", "Job"}  # its own copies: hooks run first


def test_existing_config_map_and_secret_are_used_by_pods_and_job() -> None:
    docs = render(CASES["existing ConfigMap and Secret"])
    assert not by_kind(docs, "ConfigMap") and not by_kind(docs, "Secret")  # nothing of the chart's own
    for pod in (by_kind(docs, "Deployment")[0], by_kind(docs, "Job")[0]):
        spec = pod["spec"]["template"]["spec"]
        assert {"name": "config", "configMap": {"name": "gw-config"}} in spec["volumes"]
        assert spec["containers"][0]["envFrom"] == [{"secretRef": {"name": "gw-secrets"}}]


def gateway_config(docs: list[dict[str, Any]]) -> Any:
    (configmap,) = [d for d in by_kind(docs, "ConfigMap") if "helm.sh/hook" not in d["metadata"].get(
        "annotations", {})]
    raw = yaml.safe_load(configmap["data"]["gateway.yaml"])
    return parse_config(raw, {"OPENAI_API_KEY": "sk-test", "POSTGRES_PASSWORD": "pw"})


def test_rendered_config_is_a_valid_gateway_config_and_migration_mode_follows_the_database() -> None:
    job = gateway_config(render(CASES["external postgres, migration job"]))
    assert job.database.url.startswith("postgresql://") and job.database.migrate_on_start is False
    assert job.redis.sentinel is not None and job.redis.sentinel.master_name == "gw"
    sqlite = gateway_config(render(None))  # SQLite in each pod: no Job, the pods migrate
    assert sqlite.database.migrate_on_start is True and not by_kind(render(None), "Job")
    in_chart = gateway_config(render(CASES["everything on"]))  # the in-chart PostgreSQL starts after the hooks
    assert in_chart.database.migrate_on_start is True and in_chart.redis.url == "redis://gw-redis:6379/0"


def test_a_config_change_rolls_the_pods() -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        (deployment,) = by_kind(render(values), "Deployment")
        annotations: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
        return annotations
    base = checksums({"config": {"database": {"url": PG_URL}}})
    changed = checksums({"config": {"database": {"url": PG_URL}, "limits": {"on_backend_error": "closed"}}})
    assert base["checksum/config"] != changed["checksum/config"]
    assert base["checksum/secret"] == changed["checksum/secret"]
    secret = checksums({"config": {"database": {"url": PG_URL}}, "secretEnv": {"OPENAI_API_KEY": "sk-new"}})
    assert secret["checksum/secret"] != base["checksum/secret"]
