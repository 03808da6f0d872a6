"""deploy/compose.yaml, read from the file (no Docker needed): it builds what exists, sets only settings the
ledger knows, passes every secret as a file, publishes the image's port, scrapes the metrics port the ledger
listens on and gives a graceful shutdown the time it may take."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ledger.entrypoints.grpc.server import SHUTDOWN_SECONDS
from ledger.settings import PREFIX, SECRET_FIELDS, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def ledger_services() -> dict[str, dict[str, Any]]:
    """The services that run the ledger's image (the server and its one-shot migration)."""
    return {name: s for name, s in services().items() if "build" in s}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def dockerfile_instructions() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [i.strip() for i in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if i.strip()]


def dockerfile_port() -> int:
    [arg] = [i for i in dockerfile_instructions() if i.startswith("ARG PORT=")]
    assert "EXPOSE ${PORT}" in dockerfile_instructions()
    return int(arg.removeprefix("ARG PORT="))


def dockerfile_env() -> set[str]:
    """The LEDGER_* variables the image sets itself."""
    return {
        name
        for i in dockerfile_instructions()
        if i.startswith("ENV ")
        for name in re.findall(r"\b(LEDGER_[A-Z_]+)=", i)
    }


def seconds(duration: str) -> float:
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert parts and duration, f"not a Compose duration: {duration!r}"
    hours, minutes, secs = (float(p or 0) for p in parts.groups())
    return hours * 3600 + minutes * 60 + secs


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def secret_file(variable: str) -> bool:
    """A variable naming a secret's file: ``LEDGER_<SECRET>_FILE`` or the postgres image's ``POSTGRES_*_FILE``."""
    if variable.startswith("POSTGRES_"):
        return variable.endswith("_FILE")
    return variable in {f"{PREFIX}{field.upper()}_FILE" for field in SECRET_FIELDS}


def test_every_service_builds_from_files_that_exist_or_names_a_pinned_image() -> None:
    for name, service in services().items():
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
            assert context == ROOT, f"{name} builds from {context}, not the repository"
        else:
            image = service["image"]
            assert re.fullmatch(r"[a-z0-9./_-]+:[A-Za-z0-9._-]+", image), f"{name}: {image}"
            assert not image.endswith(":latest"), f"{name}: pin a version, not latest"
    assert {"ledger", "migrate", "postgres", "nats", "prometheus"} <= set(services())


def test_the_ledger_sets_only_settings_the_model_knows() -> None:
    fields = set(Settings.model_fields)
    for name, service in ledger_services().items():
        for variable in environment(service):
            assert variable.startswith(PREFIX), f"{name} sets {variable}, which the ledger does not read"
            field = variable.removeprefix(PREFIX).lower()
            if field.endswith("_file") and field.removesuffix("_file") in SECRET_FIELDS:
                field = field.removesuffix("_file")
            assert field in fields, f"{name} sets {variable}, which is no setting of ledger/settings/model.py"


def test_secrets_come_from_declared_compose_secrets_as_files() -> None:
    declared = compose()["secrets"]
    for name, service in services().items():
        mounted = set(service.get("secrets", []))
        assert mounted <= set(declared), name
        for variable, value in environment(service).items():
            if not secret_file(variable):
                continue
            secret = value.removeprefix("/run/secrets/")
            assert value == f"/run/secrets/{secret}", f"{name}: {variable} is not a /run/secrets/ path"
            assert secret in mounted, f"{name}: {variable} names {secret}, which the service does not mount"
    for secret in declared.values():
        assert secret["file"].startswith("./secrets/"), secret
    assert "/deploy/secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    assert "deploy/secrets" in (ROOT / ".dockerignore").read_text().splitlines(), (
        "secrets in the build context"
    )


def test_no_secret_is_written_in_the_file() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    assert not re.search(r"://[^/\s@:]+:[^/\s@]+@", text.split("\nservices:", 1)[1]), "a URL with a password"
    for name, service in services().items():
        env = environment(service)
        for field in SECRET_FIELDS:
            variable = f"{PREFIX}{field.upper()}"
            if f"{variable}_FILE" in env or field in ("store", "identity_pepper"):
                assert env.get(variable, "") == "", f"{name} gives {variable} a plain value"
        assert "POSTGRES_PASSWORD" not in env, f"{name}: give the password as POSTGRES_PASSWORD_FILE"
    server = environment(services()["ledger"])
    assert server["LEDGER_IDENTITY_PEPPER_FILE"].startswith("/run/secrets/")
    assert server["LEDGER_STORE_FILE"].startswith("/run/secrets/")


def test_a_secret_file_is_not_shadowed_by_the_images_default() -> None:
    """``LEDGER_X`` and ``LEDGER_X_FILE`` both set is refused at start: the image's own ``LEDGER_X`` is blanked."""
    for name, service in ledger_services().items():
        env = environment(service)
        for variable in dockerfile_env():
            if f"{variable}_FILE" in env:
                assert env.get(variable) == "", (
                    f"{name}: the image sets {variable}; blank it beside {variable}_FILE"
                )


def test_the_ledger_publishes_the_port_the_image_exposes_and_listens_on() -> None:
    port = dockerfile_port()
    ledger = services()["ledger"]
    published = [int(str(p).rsplit(":", 1)[1]) for p in ledger["ports"]]
    assert published == [port]
    assert port_of(environment(ledger).get("LEDGER_LISTEN", f"0.0.0.0:{port}")) == port
    assert ledger["healthcheck"]["test"] == ["CMD", "ledger", "health"]


def test_prometheus_scrapes_the_ledgers_metrics_port_with_the_alerts_job() -> None:
    listen = environment(services()["ledger"])["LEDGER_METRICS_LISTEN"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    [static] = job["static_configs"]
    assert static["targets"] == [f"ledger:{port_of(listen)}"]
    alerts = (DEPLOY / "prometheus" / "alerts.yaml").read_text()
    assert f'up{{job="{job["job_name"]}"}}' in alerts
    mounts = services()["prometheus"]["volumes"]
    for rules in config["rule_files"]:
        assert f"./prometheus/alerts.yaml:{rules}:ro" in mounts


def test_every_mounted_file_of_the_repository_exists() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"


def test_dependencies_wait_for_health_and_the_migration() -> None:
    ledger = services()["ledger"]
    assert ledger["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert ledger["depends_on"]["nats"]["condition"] == "service_healthy"
    assert ledger["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services()["migrate"]["command"] == ["migrate"]
    assert services()["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services()["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert services()["postgres"]["image"].startswith("postgres:16")
    assert "-js" in services()["nats"]["command"]
    assert "healthcheck" in services()["nats"]


def test_the_stop_grace_period_covers_the_documented_shutdown() -> None:
    ledger = services()["ledger"]
    drain = float(environment(ledger).get("LEDGER_SHUTDOWN_DRAIN_SECONDS", "0"))
    assert seconds(ledger["stop_grace_period"]) >= SHUTDOWN_SECONDS + drain
