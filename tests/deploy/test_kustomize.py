"""deploy/ rendered by `kubectl kustomize` (offline), and the rendered objects checked for what
running modelplex on Kubernetes needs: gRPC health probes (readiness per model), GPU requests
and a node selector per GPU model, Prometheus scraping, a headless and a ClusterIP Service,
a PodDisruptionBudget, termination matched to the server's grace period, an HPA on a metric
the server exports, config from a ConfigMap and tokens from a Secret; and the KServe example."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import yaml

from modelplex.server.config import Config, PluginSettings
from modelplex.server.metrics import Metrics
from modelplex.server.plugins import discover

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["cpu", "gpu-a100", "gpu-l4"]

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (kustomize is built in)")


def render(path: str) -> dict[str, list[dict]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    objects: dict[str, list[dict]] = {}
    for doc in yaml.safe_load_all(out.stdout):
        objects.setdefault(doc["kind"], []).append(doc)
    return objects


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request):
    objects = render(f"deploy/overlays/{request.param}")
    [deployment] = objects["Deployment"]
    [configmap] = objects["ConfigMap"]
    config = Config.model_validate(tomllib.loads(configmap["data"]["modelplex.toml"]))
    return request.param, objects, deployment, config


@pytest.fixture(scope="module")
def specs():
    return set(discover(PluginSettings()).specs)


def pod(deployment):
    return deployment["spec"]["template"]


def container(deployment):
    [c] = pod(deployment)["spec"]["containers"]
    return c


def port(c, name):
    return next(p["containerPort"] for p in c["ports"] if p["name"] == name)


def test_the_config_comes_from_the_configmap_and_is_valid(overlay, specs):
    _, objects, deployment, config = overlay
    c = container(deployment)
    volumes = {v["name"]: v for v in pod(deployment)["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    [configmap] = objects["ConfigMap"]
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert c["args"] == ["--config", f"{mounts['config']}/modelplex.toml"]
    assert {m.spec for m in config.models} <= specs  # every spec is one a first-party plugin registers
    assert config.server.port == port(c, "grpc") and config.server.metrics_port == port(c, "metrics")
    assert config.server.max_connection_age_s is not None


def test_tokens_come_from_a_secret(overlay):
    _, _, deployment, config = overlay
    volumes = {v["name"]: v for v in pod(deployment)["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
    secret = next(name for name, v in volumes.items() if "secret" in v)
    assert volumes[secret]["secret"]["secretName"] == "modelplex-tokens"
    assert PurePosixPath(config.server.auth.tokens_file).parent == PurePosixPath(mounts[secret])


def test_probes_are_grpc_health_checks_with_readiness_per_model(overlay):
    name, _, deployment, config = overlay
    c = container(deployment)
    probes = {kind: c[kind]["grpc"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert all(p["port"] == config.server.port for p in probes.values())
    # Liveness: a service that is SERVING from the bind on, even while models load.
    assert probes["livenessProbe"]["service"] == probes["startupProbe"]["service"] == "modelplex.v1.ModelRepository"
    ready = probes["readinessProbe"]["service"]
    if name.startswith("gpu"):
        assert ready in {f"modelplex.model/{m.served_name}" for m in config.models}
    else:
        assert ready == ""  # every model of the config


def test_gpu_overlays_request_a_gpu_on_their_gpu_model(overlay):
    name, _, deployment, config = overlay
    spec, c = pod(deployment)["spec"], container(deployment)
    if not name.startswith("gpu"):
        assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
        assert all(d == "cpu" for m in config.models for d in m.devices)
        return
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["image"].endswith("-cuda")
    product = spec["nodeSelector"]["nvidia.com/gpu.product"]
    assert {"gpu-a100": "A100", "gpu-l4": "L4"}[name] in product
    assert all(d.startswith("cuda") for m in config.models for d in m.devices)


def test_prometheus_scrapes_the_metrics_port(overlay):
    name, objects, deployment, config = overlay
    annotations = pod(deployment)["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == config.server.metrics_port
    if name == "gpu-a100":
        [monitor] = objects["ServiceMonitor"]
        selected = [
            s
            for s in objects["Service"]
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert any(any(p["name"] == "metrics" for p in s["spec"]["ports"]) for s in selected)


def test_a_headless_and_a_clusterip_service_select_the_pods(overlay):
    _, objects, deployment, _ = overlay
    labels = pod(deployment)["metadata"]["labels"]
    services = {
        ("headless" if s["spec"].get("clusterIP") == "None" else s["spec"]["type"]): s for s in objects["Service"]
    }
    assert set(services) == {"headless", "ClusterIP"}
    for service in services.values():
        assert service["spec"]["selector"].items() <= labels.items()
        grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
        assert grpc["targetPort"] == "grpc" and grpc["appProtocol"] == "grpc"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_a_disruption_budget_covers_the_pods(overlay):
    _, objects, deployment, _ = overlay
    [pdb] = objects["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod(deployment)["metadata"]["labels"].items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_termination_waits_for_the_servers_grace_period(overlay):
    _, _, deployment, config = overlay
    pre_stop = container(deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]
    needed = pre_stop + config.server.grace_period_s + config.server.shutdown_bound_s
    assert pod(deployment)["spec"]["terminationGracePeriodSeconds"] >= needed


def test_the_autoscaler_follows_a_metric_the_server_exports(overlay):
    _, objects, deployment, _ = overlay
    [hpa] = objects["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    [metric] = hpa["spec"]["metrics"]
    exported = {family.name for family in Metrics(list).registry.collect()}
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] in exported
    assert hpa["spec"]["minReplicas"] >= 2  # with the PDB, a drain never takes the last replica


def test_the_pods_run_as_the_images_non_root_user(overlay):
    _, _, deployment, _ = overlay
    security = pod(deployment)["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert container(deployment)["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod(deployment)["spec"]["automountServiceAccountToken"] is False


def test_the_kserve_example_runs_modelplex_over_grpc_v2(specs):
    objects = render("deploy/kserve")
    [runtime], [service] = objects["ServingRuntime"], objects["InferenceService"]
    assert "grpc-v2" in runtime["spec"]["protocolVersions"]
    [c] = runtime["spec"]["containers"]
    [h2c] = [p for p in c["ports"] if p["name"] == "h2c"]
    assert f"--port={h2c['containerPort']}" in c["args"] and "--model={{.Name}}" in c["args"]
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and model["protocolVersion"] == "grpc-v2"
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert service["metadata"]["name"] in specs  # the runtime serves the spec named like the service
