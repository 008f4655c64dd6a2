"""The deployable stack: compose file, Kubernetes manifests, Dockerfile, Prometheus rules and Grafana dashboard.

No Docker engine is needed: files are parsed and every command they run is checked against the real CLI. The
Prometheus tests use the Debian ``prometheus`` package (``promtool`` and ``prometheus`` on PATH or in
/usr/bin); under ``CI=true`` they must run (``.ci/run`` installs the package).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from campaigns.clock import FrozenClock
from tests.conftest import IN_CI
from tests.e2e.test_up import poll
from tests.factories import call_body, make_event, sms_body
from worker.api import create_app
from worker.cli import app as cli
from worker.embedded import free_port, wait_for_port
from worker.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "campaigns.json"
APP_SERVICES = {"migrate", "api", "scheduler", "worker", "beat", "simulator", "demo-import"}
METRIC = re.compile(r"\bcampaigns_[a-z0-9_]+\b")


def _binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found:
        return found
    if IN_CI:
        pytest.fail(f"{name} is required under CI=true (apt-get install prometheus; .ci/run does it)")
    pytest.skip(f"{name} is not installed (Debian package `prometheus`)")


def _cli_accepts(argv: list[str]) -> None:
    """``campaigns <argv> --help`` parses: the command and every option named exist (nothing runs)."""
    result = CliRunner().invoke(cli, [*argv, "--help"])
    assert result.exit_code == 0, f"`campaigns {' '.join(argv)}` is not a valid command line:\n{result.output}"


# --- docker compose ----------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_has_the_whole_stack() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "prometheus", "grafana"} | APP_SERVICES
    assert services["migrate"]["restart"] == "no" and services["migrate"]["command"] == ["migrate"]
    for name in ("api", "scheduler", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert "profiles" not in services[name]
    # The demo profile adds the simulator and a one-shot import of the bundled sample.
    assert services["simulator"]["profiles"] == ["demo"]
    assert services["demo-import"]["profiles"] == ["demo"]
    assert services["demo-import"]["command"][:2] == ["import", "/data/sample_contacts.csv"]
    assert "./campaigns/data:/data:ro" in services["demo-import"]["volumes"]
    assert (ROOT / "campaigns" / "data" / "sample_contacts.csv").exists()
    # Prometheus and Grafana get the files from deploy/.
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in services["grafana"]["volumes"]
    assert services["worker"]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_gives_the_api_and_the_worker_the_recurring_directory() -> None:
    # The worker syncs CAMPAIGNS_RECURRING_DIR on every tick; the api accepts only definitions reading under it.
    services = compose()["services"]
    for name in ("api", "worker"):
        directory = services[name]["environment"]["CAMPAIGNS_RECURRING_DIR"]
        mounts = [v.rpartition(":ro")[0].rpartition(":")[2] for v in services[name]["volumes"]]
        assert directory in mounts, name


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_every_compose_command_exists_in_the_cli(service: str) -> None:
    _cli_accepts(compose()["services"][service]["command"])


def demo_env() -> dict[str, str]:
    lines = (DEPLOY / "demo.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_compose_demo_keys_match() -> None:
    """The simulator signs with the demo private key; the demo's api verifies with its public half."""
    from campaigns.telephony.signatures import load_public_key, private_key_from_b64, public_key_b64

    services = compose()["services"]
    private = services["simulator"]["environment"]["CAMPAIGNS_SIMULATOR_PRIVATE_KEY"]
    public = demo_env()["CAMPAIGNS_TELNYX_PUBLIC_KEY"]
    assert public_key_b64(private_key_from_b64(private)) == public
    load_public_key(public)
    assert demo_env()["CAMPAIGNS_DEMO_MODE"] == "true"


SECRETS = ("CAMPAIGNS_API_TOKEN", "CAMPAIGNS_TELNYX_API_KEY", "CAMPAIGNS_TELNYX_PUBLIC_KEY", "CAMPAIGNS_METRICS_TOKEN")


def test_compose_has_no_default_secret_outside_the_demo_profile() -> None:
    """Issue 19 item 12: only the demo may run on demo secrets; nothing else gets one by default."""
    services = compose()["services"]
    for name, service in services.items():
        if "demo" in service.get("profiles", []):
            continue
        environment = service.get("environment", {})
        for key in (*SECRETS, "GF_SECURITY_ADMIN_PASSWORD"):
            value = str(environment.get(key, ""))
            default = re.search(r":-([^}]*)}", value)
            assert default is None or default.group(1) == "", (name, key, value)
        assert "CAMPAIGNS_SIMULATOR_PRIVATE_KEY" not in environment, name
        assert str(environment.get("CAMPAIGNS_DEMO_MODE", "false")).endswith(":-false}") or not environment.get(
            "CAMPAIGNS_DEMO_MODE"
        ), name
    assert ":?" in services["api"]["environment"]["CAMPAIGNS_API_TOKEN"]  # compose refuses to start without one
    for secret in demo_env().values():
        assert secret not in COMPOSE.read_text() or secret in ("true",), secret


def test_compose_monitoring_is_local_and_authenticated() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        for port in services[name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert not any("enable-lifecycle" in arg for arg in services["prometheus"]["command"])
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert ":?" in grafana["GF_SECURITY_ADMIN_PASSWORD"]
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in grafana


def test_the_api_refuses_the_demo_secrets_outside_demo_mode(runtime: Runtime) -> None:
    from worker.api.guard import InsecureConfiguration

    demo = demo_env()
    for key, value in (
        ("api_token", demo["CAMPAIGNS_API_TOKEN"]),
        ("telnyx_public_key", demo["CAMPAIGNS_TELNYX_PUBLIC_KEY"]),
    ):
        settings = runtime.settings.model_copy(update={key: value})
        with pytest.raises(InsecureConfiguration, match="demo"):
            create_app(Runtime(settings, runtime.clock, runtime.sessions, runtime.providers))
        demo_settings = settings.model_copy(update={"demo_mode": True})
        create_app(Runtime(demo_settings, runtime.clock, runtime.sessions, runtime.providers))


def test_campaigns_api_exits_on_the_demo_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from campaigns.settings import get_settings

    monkeypatch.setenv("CAMPAIGNS_API_TOKEN", demo_env()["CAMPAIGNS_API_TOKEN"])
    monkeypatch.delenv("CAMPAIGNS_DEMO_MODE", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["api", "--port", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "demo token" in result.output


# --- Kubernetes --------------------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    return containers


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == files


def test_k8s_api_and_worker_mount_the_recurring_directory() -> None:
    docs = manifests()
    directory = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["CAMPAIGNS_RECURRING_DIR"]
    for name in ("campaigns-api", "campaigns-worker"):
        deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
        (container,) = _containers(deployment)
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
        volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
        assert volume["configMap"]["optional"] is True, name  # the stack starts without any definitions


def test_deployments_have_probes_resources_and_secret_references() -> None:
    docs = manifests()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"campaigns-api", "campaigns-scheduler", "campaigns-worker", "campaigns-beat"}
    secret_keys = set(next(d for d in docs if d["kind"] == "Secret")["stringData"])
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    for name, deployment in deployments.items():
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in _containers(deployment):
            assert container.get("livenessProbe"), name
            # Readiness only matters for what serves a port (beat serves nothing).
            assert container.get("readinessProbe") or not container.get("ports"), name
            assert container["resources"]["requests"] and container["resources"]["limits"], name
            refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
            assert {r["name"] for r in refs} == {"campaigns-secrets"}
            assert {r["key"] for r in refs} <= secret_keys
            assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
    assert deployments["campaigns-beat"]["spec"]["replicas"] == 1
    assert deployments["campaigns-beat"]["spec"]["strategy"] == {"type": "Recreate"}
    services = [d for d in docs if d["kind"] == "Service"]
    assert any(s["spec"]["selector"] == {"app.kubernetes.io/name": "campaigns-api"} for s in services)


def test_the_worker_autoscales() -> None:
    hpa = next(d for d in manifests() if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "campaigns-worker"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_every_manifest_command_exists_in_the_cli() -> None:
    workloads = [d for d in manifests() if d["kind"] in ("Deployment", "Job")]
    assert len(workloads) == 5
    for doc in workloads:
        for container in _containers(doc):
            _cli_accepts(container["args"])


# --- Dockerfile --------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_without_build_tools() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) >= 2
    final = stages[-1]
    assert "build-essential" in stages[0]
    assert not re.search(r"build-essential|gcc|apt-get install", final)
    user = re.findall(r"^USER (\S+)", final, flags=re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["campaigns"\]', final, flags=re.MULTILINE)
    assert re.search(r"^\s+MALLOC_ARENA_MAX=2 ", final, flags=re.MULTILINE)  # threads' arenas (benchmarks.md)
    for source in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, flags=re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY {path}: no such path"


def test_dockerfile_installs_the_wheel_not_an_editable_tree() -> None:
    # An editable install hid that the wheel shipped no migrations (issue 16): the image runs what users install.
    text = (DEPLOY / "Dockerfile").read_text()
    build, final = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:][-2:]
    assert re.search(r"pip wheel --no-deps --wheel-dir /dist \.", build)
    assert re.search(r"pip install --no-deps /dist/campaigns-\*\.whl", build)
    assert not re.search(r"pip install\b.*\s-e\b", text)
    assert re.findall(r"^COPY --from=build (\S+)", final, flags=re.MULTILINE) == ["/opt/venv"]  # no source tree


# --- metric names used by the dashboard and the alerts -----------------------------------------------------


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 20
    return exprs


def _alert_exprs() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def exposed_names(runtime: Runtime) -> set[str]:
    with TestClient(create_app(runtime)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        names |= {sample.name for sample in family.samples}
    return names


def test_every_metric_in_the_dashboard_and_alerts_is_exposed(runtime: Runtime) -> None:
    names = exposed_names(runtime)
    used = {m for expr in _dashboard_exprs() + _alert_exprs() for m in METRIC.findall(expr)}
    assert len(used) >= 15
    assert used - names == set()
    # And the other way round: the dashboard shows every family the issue asks for.
    dashboard_text = " ".join(_dashboard_exprs())
    for family in ("campaigns_deferrals_total", "campaigns_provider_requests_total", "campaigns_campaign_events",
                   "campaigns_dispatch_lag_seconds_bucket", "campaigns_oldest_due_event_age_seconds"):  # fmt: skip
        assert family in dashboard_text


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p} == {uid}
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/campaigns.yml").read_text())
    mount = next(
        v for v in compose()["services"]["grafana"]["volumes"] if "dashboards" in v and "provisioning" not in v
    )
    assert provider["providers"][0]["options"]["path"] == mount.split(":")[1]


# --- promtool and a real Prometheus ------------------------------------------------------------------------


def test_promtool_checks_the_config_and_rules() -> None:
    promtool = _binary("promtool")
    for args in (
        ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        ["check", "rules", str(ALERTS)],
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_fire_on_what_they_describe() -> None:
    """``promtool test rules``: each alert fires on its situation (and not on a healthy one)."""
    promtool = _binary("promtool")
    done = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", (DEPLOY / "prometheus" / "alerts_test.yml").read_text()))
    defined = {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}
    assert tested == defined


@pytest.fixture
def served_api(runtime: Runtime) -> Iterator[str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port, timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def start_prometheus(prometheus: str, config: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, Any]:
    """A Prometheus on ``config`` (its process, port and log file), storing under ``tmp_path``."""
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return process, port, log


def test_a_real_prometheus_scrapes_the_api_and_evaluates_the_rules(
    served_api: str, sessions: sessionmaker[Session], clock: FrozenClock, tmp_path: Path
) -> None:
    prometheus = _binary("prometheus")
    now = clock.now()
    with sessions.begin() as s:
        make_event(s, now, call_body(now))
        make_event(s, now, call_body(now, telnyx_end_user_target="+15551234568"))
        make_event(s, now, sms_body(now))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [{"job_name": "campaigns-api", "static_configs": [{"targets": [served_api]}]}],
            }
        )
    )
    process, port, log = start_prometheus(prometheus, config, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_port(port, timeout=60)

        def query(expr: str) -> list[dict[str, Any]] | None:
            try:
                body = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return None
            result: list[dict[str, Any]] = body.get("data", {}).get("result", [])
            return result or None

        try:
            pending = poll(lambda: query('sum(campaigns_events{status="pending"})'), timeout=60, interval=0.5)
        except AssertionError:
            print((tmp_path / "prometheus.log").read_text()[-3000:])
            raise
        assert float(pending[0]["value"][1]) == 3
        by_channel = query('campaigns_events{status="pending",job="campaigns-api"}')
        assert by_channel is not None
        assert {r["metric"]["channel"]: float(r["value"][1]) for r in by_channel} == {"phone_call": 2, "sms_chat": 1}
        assert float((query("campaigns_db_collector_up") or [{}])[0]["value"][1]) == 1

        # The deploy rules loaded and evaluate without errors against real data.
        def rules() -> list[dict[str, Any]] | None:
            body = httpx.get(f"{base}/api/v1/rules", timeout=5).json()
            loaded = [r for g in body["data"]["groups"] for r in g["rules"]]
            return loaded if loaded and all(r.get("lastEvaluation", "").startswith("2") for r in loaded) else None

        loaded = poll(rules, timeout=30, interval=0.5)
        assert {r["name"] for r in loaded} == {
            rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
        }
        assert all(r["health"] == "ok" for r in loaded), [(r["name"], r.get("lastError")) for r in loaded]
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_a_real_prometheus_scrapes_the_api_with_the_metrics_token(runtime: Runtime, tmp_path: Path) -> None:
    """The api job's ``authorization`` in deploy/prometheus.yml, with a token: the scrape is up, and refused
    (401) for a scraper without it."""
    import uvicorn

    prometheus = _binary("prometheus")
    settings = runtime.settings.model_copy(update={"metrics_token": "scrape-secret"})
    app = create_app(Runtime(settings, runtime.clock, runtime.sessions, runtime.providers))
    api_port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deployed = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in deployed["scrape_configs"] if j["job_name"] == "campaigns-api")
    (tmp_path / "secrets").mkdir()
    (tmp_path / job["authorization"]["credentials_file"]).write_text("scrape-secret")
    config = tmp_path / "prometheus.yml"
    targets = [{"targets": [f"127.0.0.1:{api_port}"]}]
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {**job, "static_configs": targets},
        {"job_name": "no-token", "static_configs": targets},
    ]}))  # fmt: skip
    process, port, log = start_prometheus(prometheus, config, tmp_path)
    try:
        wait_for_port(api_port, timeout=30)
        wait_for_port(port, timeout=60)

        def health() -> dict[str, str] | None:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return None
            seen = {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}
            return seen if "unknown" not in seen.values() and len(seen) == 2 else None

        assert poll(health, timeout=60, interval=0.5) == {"campaigns-api": "up", "no-token": "down"}
    finally:
        process.terminate()
        process.wait(30)
        log.close()
        server.should_exit = True
        thread.join(10)
