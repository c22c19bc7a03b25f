"""Deployment files, checked offline: Kubernetes schemas, the compose spec, the Dockerfile's shape,
the Grafana dashboard's metrics and the AsyncAPI document against the contracts."""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY

import services.core.observability  # noqa: F401  (registers the metrics)
from services.contracts import topics
from services.contracts.schemas import documents
from services.contracts.triggers import Category

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SERVICES = {"ingest", "engine", "notifier"}


def _k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs.extend(doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc)
    return docs


@pytest.mark.parametrize("doc", _k8s_documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_kubernetes_manifests_validate_against_the_schemas(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_deployments_have_probes_resources_non_root_and_time_to_drain() -> None:
    docs = _k8s_documents()
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert {d["spec"]["template"]["spec"]["containers"][0]["args"][1] for d in deployments} == SERVICES
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["terminationGracePeriodSeconds"] > float(config["SMITS_SHUTDOWN_GRACE_S"])
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert services == {f"smits-{name}" for name in SERVICES}
    assert any(d["kind"] == "Job" and d["metadata"]["name"] == "smits-migrate" for d in docs)


def test_compose_file_follows_the_compose_spec() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    jsonschema.validators.validator_for(schema)(schema).validate(compose)
    services = compose["services"]
    assert {"kafka", "postgres", "migrate", "topics", *SERVICES} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:3.9")
    assert "healthcheck" in services["postgres"]
    for name in SERVICES:
        assert services[name]["command"] == ["serve", name]
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    lines = [line.strip() for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()]
    assert sum(line.startswith("FROM ") for line in lines) >= 2
    user = next(line for line in lines if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in {"0", "root"}
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert 'ENTRYPOINT ["smits"]' in lines


def test_the_dashboard_only_queries_metrics_we_export() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "smits.json").read_text())
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = {metric.name + suffix for metric in REGISTRY.collect() for suffix in suffixes.get(metric.type, ("",))}
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b((?:smits|kafka)_[a-z_]+)", target["expr"]))
    assert used
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    assert "kafka_consumergroup_lag" in used


def test_asyncapi_describes_exactly_the_contract_topics_and_schemas() -> None:
    spec = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert spec["asyncapi"].startswith("3.")
    assert {channel["address"] for channel in spec["channels"].values()} == {f"smits.{t}" for t in topics.ALL}
    exported = set(documents())
    for message in spec["components"]["messages"].values():
        ref = message["payload"].get("$ref")
        if ref:
            assert Path(ref).name in exported, ref
            assert (ROOT / "docs" / ref).resolve().is_file(), ref
    names = {m["name"] for m in spec["components"]["messages"].values()}
    assert {f"smits.trigger.{category.value}.v1" for category in Category} <= names
    for operation in spec["operations"].values():
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in spec["channels"]


def test_the_wheel_carries_the_migrations_and_default_policies(tmp_path: Path) -> None:
    # pip builds in the checkout (build/, smits.egg-info/); make test runs this test under several Pythons at once.
    lock = ROOT / ".run" / "wheel-build.lock"
    lock.parent.mkdir(exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        built = subprocess.run(  # with build isolation, as `pip install .` in the Dockerfile does
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("smits-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "migrations/env.py" in names
    assert any(name.startswith("migrations/versions/0001_") for name in names)
    assert "services/strategy_engine/default_policies.yaml" in names
