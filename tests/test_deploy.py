"""The deployment files: systemd units that systemd accepts, a Dockerfile and compose file
that name what the code has (packages, configuration keys), so they cannot drift."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml

from keydir import config

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


def test_systemd_accepts_the_units(tmp_path):
    systemd_analyze = shutil.which("systemd-analyze")
    assert systemd_analyze, "systemd-analyze (Debian package systemd) is needed for this test"
    assert UNITS
    for unit in UNITS:
        text = unit.read_text()
        # The programs are installed elsewhere on a real machine; here any program will do.
        copy = tmp_path / unit.name
        copy.write_text(re.sub(r"ExecStart=\S+", "ExecStart=/bin/true", text))
        checked = subprocess.run([systemd_analyze, "verify", str(copy)], capture_output=True,
                                 text=True)
        assert checked.returncode == 0, f"{unit.name}: {checked.stderr}"
        assert "User=sealgate" in text and "NoNewPrivileges=yes" in text


def _known_environment() -> set[str]:
    names = set()
    for section, kind in config._SECTION_TYPES.items():
        for key in kind.__dataclass_fields__:
            names.add(f"{config.ENV_PREFIX}{section.upper()}__{key.upper()}")
    return names


def test_the_dockerfile_copies_every_package_and_sets_only_known_keys():
    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    for package in (p.rstrip("*") for p in packages):
        assert f"COPY {package} ./{package}" in dockerfile, package
    for needed in ("migrations", "templates", "static"):
        assert f"COPY {needed} ./{needed}" in dockerfile
    used = set(re.findall(r"SEALGATE_[A-Z_]+__[A-Z_]+", dockerfile))
    assert used and used <= _known_environment(), used - _known_environment()


def test_the_compose_file_wires_the_gateway_to_its_database():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    gateway = compose["services"]["sealgate"]
    assert gateway["depends_on"]["db"]["condition"] == "service_healthy"
    environment = gateway["environment"]
    assert set(k for k in environment if k.startswith("SEALGATE_")) <= _known_environment()
    assert environment["SEALGATE_DATABASE__URL"].startswith("postgresql+psycopg://")
    assert {"25:2525", "587:2587"} <= set(gateway["ports"])
