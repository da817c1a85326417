"""Deployment files: the systemd unit, sysusers/tmpfiles, the container image and its config.

systemd's own tools check what they can where they are installed (skipped elsewhere); the
hardening is also checked directive by directive, so a lost line fails on any machine. The
built image is run only where podman and the image are present: CI does not build it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.base.metrics import Metrics
from gateway.config import load_config
from gateway.keys.site_secret import create_site_secret

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "dicom-gateway.service"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE = os.environ.get("DICOM_GATEWAY_IMAGE", "localhost/dicom-gateway:latest")
CREDENTIAL_PATH = "/run/credentials/dicom-gateway.service/site-secret.key"


def unit_directives(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values in order (keys such as SystemCallFilter= repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: directive outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service_value(key: str) -> str:
    values = unit_directives()["Service"].get(key)
    assert values, f"[Service] {key}= is missing"
    return values[-1]


# -- the unit ---------------------------------------------------------------------------------


def test_unit_is_a_notify_service_with_a_watchdog_and_a_drain() -> None:
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "ExecStart": "/usr/bin/dicom-gateway run -c /etc/dicom-gateway/gateway.yaml",
        "User": "dicom-gateway",
        "Group": "dicom-gateway",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "KillSignal": "SIGTERM",
        "KillMode": "mixed",
        "TimeoutStopSec": "60",
        "StateDirectory": "dicom-gateway",
        "ConfigurationDirectory": "dicom-gateway",
        "UMask": "0077",
        "LoadCredential": "site-secret.key:/etc/dicom-gateway/site-secret.key",
    }
    assert {key: service_value(key) for key in expected} == expected
    assert unit_directives()["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_sandbox_directives_are_all_there() -> None:
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
    }
    assert {key: service_value(key) for key in expected} == expected
    filters = unit_directives()["Service"]["SystemCallFilter"]
    assert filters[0] == "@system-service"
    assert all(f == "@system-service" or f.startswith("~") for f in filters), filters


def test_unit_documents_the_port_104_alternative_and_the_credential_path() -> None:
    text = UNIT.read_text(encoding="utf-8")
    assert "#   CapabilityBoundingSet=CAP_NET_BIND_SERVICE" in text
    assert "#   AmbientCapabilities=CAP_NET_BIND_SERVICE" in text
    assert CREDENTIAL_PATH in text
    readme = (SYSTEMD / "README.md").read_text(encoding="utf-8")
    assert CREDENTIAL_PATH in readme
    assert "systemctl enable --now dicom-gateway" in readme


def test_example_config_names_the_path_systemd_gives_the_credential(tmp_path: Path) -> None:
    etc = tmp_path / "etc/dicom-gateway"  # where systemd/README.md installs it
    etc.mkdir(parents=True)
    shutil.copy(SYSTEMD / "gateway.yaml", etc / "gateway.yaml")
    config = load_config(etc / "gateway.yaml", check_files=False)
    assert str(config.keys.secret) == CREDENTIAL_PATH
    assert config.storage_dir == Path("/var/lib/dicom-gateway")  # StateDirectory=
    assert config.keys.reid_public_key == etc / "reid-public.pem"


def _systemd_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _unit_with_stub_exec_start(tmp_path: Path) -> Path:
    """The unit as shipped, but ExecStart on a stub: verify insists the binary exists."""
    stub = tmp_path / "dicom-gateway"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8")
    shipped = "ExecStart=/usr/bin/dicom-gateway "
    assert text.count(shipped) == 1
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(shipped, f"ExecStart={stub} "), encoding="utf-8")
    return unit


def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path) -> None:
    """verify exits 0 even on an unknown directive or a bad value ("ignoring"): any line it
    prints about our unit is a failure."""
    analyze = _systemd_tool("systemd-analyze")
    unit = _unit_with_stub_exec_start(tmp_path)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    about_us = [line for line in output.splitlines() if "dicom-gateway" in line]
    assert result.returncode == 0, output
    assert about_us == []


def test_systemd_analyze_verify_would_catch_a_typo(tmp_path: Path) -> None:
    """The check above can fail: a misspelt value is reported."""
    analyze = _systemd_tool("systemd-analyze")
    unit = _unit_with_stub_exec_start(tmp_path)
    unit.write_text(
        unit.read_text(encoding="utf-8").replace("ProtectSystem=strict", "ProtectSystem=strct"),
        encoding="utf-8",
    )
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=120,
    )
    assert "ProtectSystem" in result.stdout + result.stderr or "strct" in result.stderr


def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path) -> None:
    """Overall exposure at most 2.0 of 10 ("OK"); --threshold takes tenths."""
    analyze = _systemd_tool("systemd-analyze")
    unit = _unit_with_stub_exec_start(tmp_path)
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=20", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=120,
    )
    if "--offline" in result.stderr and "nrecognized" in result.stderr + result.stdout:
        pytest.skip("systemd-analyze security --offline needs systemd 250+")
    exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert exposure, result.stdout + result.stderr
    assert result.returncode == 0, f"exposure {exposure.group(1)}:\n{result.stdout}"


# -- sysusers and tmpfiles ----------------------------------------------------------------


def test_sysusers_and_tmpfiles_create_the_user_and_folders(tmp_path: Path) -> None:
    """Both files applied to a scratch root (--root), as the install steps apply them to /."""
    sysusers = _systemd_tool("systemd-sysusers")
    tmpfiles = _systemd_tool("systemd-tmpfiles")
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles --root needs root to set owners")
    root = tmp_path / "root"
    for folder in ("etc", "usr/lib/sysusers.d", "usr/lib/tmpfiles.d"):
        (root / folder).mkdir(parents=True)
    shutil.copy(SYSTEMD / "dicom-gateway.sysusers", root / "usr/lib/sysusers.d/dicom-gateway.conf")
    shutil.copy(SYSTEMD / "dicom-gateway.tmpfiles", root / "usr/lib/tmpfiles.d/dicom-gateway.conf")
    run = {"capture_output": True, "text": True, "timeout": 120, "check": True}
    subprocess.run([sysusers, f"--root={root}", "dicom-gateway.conf"], **run)
    # The secret, made as root, then tmpfiles (again) sets the modes, as in systemd/README.md.
    (root / "etc/dicom-gateway").mkdir()
    secret = create_site_secret(root / "etc/dicom-gateway")
    secret.chmod(0o644)
    subprocess.run([tmpfiles, f"--root={root}", "--create", "dicom-gateway.conf"], **run)

    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").open()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").open()}
    user = users["dicom-gateway"]
    uid, gid = int(user[2]), int(user[3])
    assert user[5:7] == ["/var/lib/dicom-gateway", "/usr/sbin/nologin\n"]
    assert int(groups["dicom-gateway"][2]) == gid

    def owner_mode(path: Path) -> tuple[int, int, int]:
        info = path.stat()
        return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)

    assert owner_mode(root / "etc/dicom-gateway") == (0, gid, 0o750)
    assert owner_mode(root / "var/lib/dicom-gateway") == (uid, gid, 0o700)
    assert owner_mode(secret) == (0, 0, 0o600)


# -- the container image ------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    joined = re.sub(r"\\\n\s*", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_dockerfile_builds_in_two_stages_on_a_chosen_base() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("ARG", "BASE_IMAGE=debian:bookworm-slim")
    froms = [args for word, args in instructions if word == "FROM"]
    assert froms == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE}"]
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert "python3 -m venv /opt/venv" in runs
    assert "/opt/venv/bin/pip install" in runs
    assert "tesseract-ocr tesseract-ocr-eng" in runs
    assert "--no-install-recommends" in runs
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in instructions


def test_dockerfile_runs_the_gateway_unprivileged_with_volumes_ports_and_a_healthcheck() -> None:
    instructions = dict(reversed(dockerfile_instructions()))  # the first of each
    last = dict(dockerfile_instructions())  # the last of each
    runs = " ".join(args for word, args in dockerfile_instructions() if word == "RUN")
    assert "--uid 10001" in runs and "--gid 10001" in runs
    assert last["USER"] == "dicom-gateway"
    assert json.loads(last["VOLUME"]) == ["/etc/dicom-gateway", "/var/lib/dicom-gateway"]
    assert last["EXPOSE"].split() == ["11112", "9102"]
    assert json.loads(last["ENTRYPOINT"]) == ["dicom-gateway"]
    assert json.loads(last["CMD"]) == ["run", "-c", "/etc/dicom-gateway/gateway.yaml"]
    assert "healthcheck.py" in instructions["HEALTHCHECK"]
    assert "curl" not in DOCKERFILE.read_text(encoding="utf-8").replace("# ", "")


def test_dockerignore_keeps_keys_environments_and_data_out_of_the_build() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "**"  # everything out, then only what the Dockerfile copies back in
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included == {"pyproject.toml", "README.md", "gateway", "docker"}
    assert {"**/*.key", "**/*.pem"} <= set(lines)
    copied = {
        args.split()[0].rstrip("/").split("/")[0]
        for word, args in dockerfile_instructions()
        if word == "COPY" and not args.startswith("--from")
    }
    assert copied <= included | {"pyproject.toml"}, copied


def test_container_config_is_valid_and_listens_on_all_interfaces(tmp_path: Path) -> None:
    """docker/gateway.yaml as it lies in /etc/dicom-gateway, with the keys `keys init` makes."""
    shutil.copy(ROOT / "docker/gateway.yaml", tmp_path / "gateway.yaml")
    create_site_secret(tmp_path)
    (tmp_path / "reid-public.pem").write_text("placeholder\n", encoding="utf-8")
    config = load_config(tmp_path / "gateway.yaml", check_files=True)
    assert config.listen.host == "0.0.0.0" and config.listen.port == 11112
    assert config.http.host == "0.0.0.0" and config.http.port == 9102
    assert config.storage_dir == Path("/var/lib/dicom-gateway")
    assert config.keys.secret == tmp_path / "site-secret.key"
    assert config.keys.reid_public_key == tmp_path / "reid-public.pem"


@pytest.mark.parametrize(("healthy", "expected"), [(True, 0), (False, 1)])
def test_image_healthcheck_follows_healthz(healthy: bool, expected: int) -> None:
    server = Metrics().start_http("127.0.0.1", 0, lambda: healthy)
    try:
        env = {**os.environ, "DICOM_GATEWAY_HEALTH_URL": f"http://127.0.0.1:{server.port}/healthz"}
        result = subprocess.run(
            [sys.executable, str(ROOT / "docker/healthcheck.py")],
            env=env, capture_output=True, text=True, timeout=30,
        )
    finally:
        server.shutdown()
    assert result.returncode == expected, result.stderr


def test_image_healthcheck_fails_when_nothing_listens() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DICOM_GATEWAY_HEALTH_URL": f"http://127.0.0.1:{port}/healthz"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "docker/healthcheck.py")],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "unhealthy" in result.stderr


def test_make_image_builds_the_dockerfile_on_the_local_base_with_podman() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        [make, "-n", "--no-print-directory", "image", "image-test", "BUILD_CA=/ca.pem"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    build = next(line for line in result.stdout.splitlines() if line.startswith("podman build"))
    assert "--format docker" in build  # the OCI format would drop the HEALTHCHECK
    assert "--build-arg BASE_IMAGE=localhost/dicom-gateway-base:bookworm" in result.stdout
    assert "--secret id=build-ca,src=/ca.pem" in result.stdout
    assert "docker/image-test.sh localhost/dicom-gateway:latest" in result.stdout


def test_make_test_does_not_build_the_image() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    test_rule = re.search(r"^test:(.*)$", makefile, re.MULTILINE)
    assert test_rule and "image" not in test_rule.group(1)
    assert "-include mk/image.mk" in makefile


def _image_present() -> bool:
    podman = shutil.which("podman")
    if podman is None:
        return False
    result = subprocess.run(
        [podman, "image", "exists", IMAGE], capture_output=True, timeout=60, check=False
    )
    return result.returncode == 0


@pytest.mark.timeout(600)
def test_built_image_receives_de_identifies_and_drains() -> None:
    """docker/image-test.sh: keys init, /healthz, HEALTHCHECK, C-ECHO, a study, SIGTERM."""
    if not _image_present():
        pytest.skip(f"podman or the image {IMAGE} is not here (make image)")
    for tool in ("echoscu", "storescu"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} (DCMTK) is not installed")
    result = subprocess.run(
        [str(ROOT / "docker/image-test.sh"), IMAGE],
        capture_output=True, text=True, timeout=540,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert f"image-test passed: {IMAGE}" in result.stdout
