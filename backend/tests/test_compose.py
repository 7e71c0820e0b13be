"""docker-compose.celery.yml and the Dockerfile, checked without Docker.

Every command a service or a health check runs must exist in this project and parse with
its real argument parser; every `worker QUEUE` names a real queue; every variable set for our
services is a Settings field, and the values (with compose defaults) make valid Settings.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import sys
import tomllib
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from app.core.config import Settings
from app.core.queues import QUEUES

BACKEND_DIR = Path(__file__).resolve().parents[1]
ROOT = BACKEND_DIR.parent
COMPOSE = ROOT / "docker-compose.celery.yml"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_WORKDIR = "/app/backend"  # where BACKEND_DIR lands in the image

# Set for our services although not Settings fields: boto3 reads the AWS_* variables itself
# (PROMETHEUS_MULTIPROC_DIR is a field). The postgres image reads POSTGRES_*, MinIO
# MINIO_ROOT_*; Redis is configured by its command line.
NOT_SETTINGS = {
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
}
EXTERNAL = {"redis", "postgres", "minio", "minio-init"}
# A database's own data: one service each, never shared.
DATA_VOLUMES = {"redis": "redis-data", "postgres": "postgres-data", "minio": "minio-data"}


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and "services" in data
    return data


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def ours() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services().items() if "build" in svc}


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` / `${VAR:?error}` with nothing set: default, or a stand-in
    secret for required values (what an operator must provide)."""

    def one(match: re.Match[str]) -> str:
        op, arg = match.group("op"), match.group("arg")
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return f"required-{match.group('name').lower()}"
        return ""

    return _VAR.sub(one, value).replace("$$", "$")


def argv_of(command: Any) -> list[list[str]]:
    """The programs a compose command runs: `sh -c "a && exec b"` is two."""
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if argv[:1] in (["CMD"], ["CMD-SHELL"]):
        argv = ["sh", "-c", " ".join(argv[1:])] if argv[0] == "CMD-SHELL" else argv[1:]
    if argv[:2] in (["sh", "-c"], ["bash", "-c"]):
        programs = []
        for part in re.split(r"&&|\|\||;", argv[2]):
            words = shlex.split(part)
            if words[:1] == ["exec"]:
                words = words[1:]
            if words:
                programs.append(words)
        return programs
    return [argv]


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parses(parser: Any, args: list[str], what: str) -> Any:
    try:
        return parser.parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{what}: {shlex.join(args)!r} does not parse (exit {exc.code})")


def check_program(argv: list[str], where: str) -> None:
    """The program exists here and accepts these arguments."""
    program, *args = argv
    if program == "reportctl":
        scripts = tomllib.loads((BACKEND_DIR / "pyproject.toml").read_text())["project"]["scripts"]
        assert scripts.get("reportctl") == "app.cli:main", f"{where}: reportctl is not a script"
        from app import cli

        _parses(cli.build_parser(), args, where)
    elif program in ("python", "python3") and args[:1] == ["-m"]:
        module = args[1]
        assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
        imported = importlib.import_module(module)
        if hasattr(imported, "build_parser"):
            _parses(imported.build_parser(), args[2:], where)
    elif program in ("python", "python3"):
        script = BACKEND_DIR / args[0]
        assert script.is_file(), f"{where}: {args[0]} does not exist in {BACKEND_DIR}"
        manager = _load(script, "celery_manager_under_test")
        parsed = _parses(manager.build_parser(), args[1:], where)
        if args[1:2] == ["worker"]:
            queues = parsed.queues
            assert queues and set(queues) <= set(QUEUES), f"{where}: unknown queue in {queues}"
    else:
        pytest.fail(f"{where}: {program!r} is not a program of this project")


def test_services_and_shape() -> None:
    names = set(services())
    assert {"redis", "postgres", "api", "beat", "flower"} <= names
    workers: dict[str, int] = {}
    for svc in ours().values():
        argv = argv_of(svc["command"])[-1]
        if argv[1:3] == ["celery_manager.py", "worker"]:
            workers[argv[3]] = workers.get(argv[3], 0) + int(
                svc.get("deploy", {}).get("replicas", 1)
            )
    assert workers == {"reports": 2, "documents": 1, "notifications,celery": 1}, workers
    for name, svc in services().items():
        if svc.get("restart") == "no":
            continue  # a one-shot (minio-init): others wait for it to complete instead
        assert "healthcheck" in svc and svc["healthcheck"]["test"], f"{name}: no health check"
    redis = services()["redis"]
    command = " ".join(argv_of(redis["command"])[0])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    flower = services()["flower"]
    assert any(str(port).endswith(":5555") for port in flower["ports"])
    assert {"FLOWER_USER", "FLOWER_PASSWORD"} <= set(flower["environment"])
    api = argv_of(services()["api"]["command"])
    assert api == [
        ["reportctl", "db", "upgrade"],
        ["reportctl", "serve", "--host", "0.0.0.0", "--port", "8000"],
    ]
    # Files live in the object store, which every service of ours waits for (its bucket made).
    for name, svc in ours().items():
        env = svc["environment"]
        assert env["STORAGE_URL"] == "s3://reports/", name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000", name
        assert "STORAGE_ROOT" not in env, f"{name}: a local storage root on several machines"
        waits = svc["depends_on"]["minio-init"]["condition"]
        assert waits == "service_completed_successfully", name


def test_minio_and_its_bucket() -> None:
    minio, init = services()["minio"], services()["minio-init"]
    assert str(minio["image"]).startswith("minio/minio") and minio["healthcheck"]["test"]
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert init.get("restart") == "no"
    script = " ".join(argv_of(init["entrypoint"])[-1])
    bucket = services()["api"]["environment"]["STORAGE_URL"].removeprefix("s3://").split("/")[0]
    assert f"mc mb --ignore-existing local/{bucket}" in script
    # The server and the services use the same keys (defaults for local use only).
    app_env = services()["api"]["environment"]
    assert interpolate(minio["environment"]["MINIO_ROOT_USER"]) == interpolate(
        app_env["AWS_ACCESS_KEY_ID"]
    )
    assert interpolate(minio["environment"]["MINIO_ROOT_PASSWORD"]) == interpolate(
        app_env["AWS_SECRET_ACCESS_KEY"]
    )


def _writable_sources(svc: dict[str, Any]) -> set[str]:
    """The volumes and host paths a service mounts read-write (short or long syntax)."""
    sources = set()
    for volume in svc.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "tmpfs" or volume.get("read_only"):
                continue
            source = volume.get("source")
        else:
            parts = str(volume).split(":")
            if len(parts) == 1:
                continue  # an anonymous volume: the container's own
            if len(parts) > 2 and "ro" in parts[2].split(","):
                continue
            source = parts[0]
        if source:
            sources.add(str(source))
    return sources


def test_no_writable_volume_is_shared() -> None:
    """Several machines share nothing but the databases, each of which owns its data."""
    owners: dict[str, list[str]] = {}
    for name, svc in services().items():
        for source in _writable_sources(svc):
            owners.setdefault(source, []).append(name)
    shared = {source: names for source, names in owners.items() if len(names) > 1}
    assert not shared, f"writable volumes shared between services: {shared}"
    for name, volume in DATA_VOLUMES.items():
        assert owners.get(volume) == [name], f"{volume} must belong to {name} alone"
    assert "storage" not in compose().get("volumes", {})


def test_dockerfile_layout() -> None:
    text = DOCKERFILE.read_text()
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", text, re.MULTILINE)
    assert workdirs and workdirs[-1] == IMAGE_WORKDIR
    assert re.search(r"^COPY\s+backend/\s+\./", text, re.MULTILINE)
    assert "pip install" in text and re.search(r"^USER\s+(?!root)", text, re.MULTILINE)
    for name, svc in ours().items():
        assert svc["build"]["dockerfile"] == "Dockerfile", name
        assert (ROOT / svc["build"]["context"] / "Dockerfile").resolve() == DOCKERFILE


@pytest.mark.parametrize("name", sorted(ours()))
def test_every_command_exists_and_parses(name: str) -> None:
    svc = ours()[name]
    for argv in argv_of(svc["command"]):
        check_program(argv, f"{name} command")
    for argv in argv_of(svc["healthcheck"]["test"]):
        check_program(argv, f"{name} healthcheck")


@pytest.mark.parametrize("name", sorted(ours()))
def test_every_env_var_is_a_setting(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {key: interpolate(str(value)) for key, value in ours()[name]["environment"].items()}
    unknown = set(env) - set(Settings.model_fields) - NOT_SETTINGS
    assert not unknown, f"{name} sets variables that are not settings: {sorted(unknown)}"
    # The values, as compose would pass them, make valid production settings.
    for key in list(os.environ):
        if key.upper() in Settings.model_fields:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ENVIRONMENT == "prod"
    assert settings.DATABASE_URL.startswith("postgresql+psycopg://")
    assert settings.CELERY_BROKER_URL == "redis://redis:6379/0"
    assert settings.CELERY_RESULT_BACKEND == "redis://redis:6379/1"
    assert settings.RQ_REDIS_URL == "redis://redis:6379/2"
    assert getattr(settings, "STORAGE_URL", "s3://reports/") == "s3://reports/"
    settings.visibility_timeout  # noqa: B018 - raises on an unsafe configuration


def test_external_images_env() -> None:
    postgres = services()["postgres"]["environment"]
    assert set(postgres) == {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    for name in EXTERNAL:
        assert "build" not in services()[name]


def test_python_in_image_matches_project() -> None:
    """The image's Python satisfies pyproject's requires-python."""
    match = re.search(r"^FROM\s+python:(\d+)\.(\d+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert match
    needed = tomllib.loads((BACKEND_DIR / "pyproject.toml").read_text())["project"][
        "requires-python"
    ]
    low = tuple(int(x) for x in re.findall(r"\d+", needed)[:2])
    assert (int(match.group(1)), int(match.group(2))) >= low
    assert sys.version_info >= (3, 11)
