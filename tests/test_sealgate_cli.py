"""The operator's ``sealgate`` command, run as real processes in a directory of their own.

Most tests share one installation (``installed``: init, a tenant, a verified domain, a
user with a certificate) and only read it; a test that changes an installation works on a
copy of it. Independent invocations run side by side, so the file stays quick.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import dns.rrset
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keydir.ca.internal import CA_CERT, CA_DIR, CA_KEY
from keydir.secrets import MASTER_KEY_FILE

ROOT = Path(__file__).resolve().parents[1]
DATA = "sealgate-data"  # the default data directory, relative to where sealgate runs
ALICE = "alice@example.com"

# The verbs of the operator contract (serve comes with the relay).
CONTRACT = [
    ("init",), ("tenant", "add"), ("tenant", "list"), ("domain", "add"), ("domain", "verify"),
    ("domain", "list"), ("user", "add"), ("user", "remove"), ("user", "list"),
    ("cert", "issue"), ("cert", "show"), ("cert", "import"), ("cert", "list"),
    ("trust", "add"), ("ca", "export"), ("jobs", "run"), ("dns", "smimea"),
    ("smime", "sign"), ("smime", "verify"), ("smime", "encrypt"), ("smime", "decrypt"),
    ("report", "usage"), ("reseller", "add"), ("reseller", "list"), ("tenant", "set-reseller"),
]


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SEALGATE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # A 2048-bit CA key keeps 'init' fast; production uses the 3072-bit default.
    env["SEALGATE_CA__INTERNAL_CA_KEY_TYPE"] = "rsa2048"
    env.update(extra or {})
    return env


def sealgate(*args: str, cwd: Path,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sealgate", *args], cwd=cwd,
                          env=_environment(env), capture_output=True, text=True, timeout=120,
                          check=False)


def side_by_side(calls: Sequence[tuple[Sequence[str], Path, dict[str, str] | None]]
                 ) -> list[subprocess.CompletedProcess[str]]:
    """Independent invocations at once (each is mostly Python start-up)."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(lambda call: sealgate(*call[0], cwd=call[1], env=call[2]), calls))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}: {result.stderr}"
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """A failure the operator can act on: the exit code, one message, no traceback."""
    assert result.returncode == code, f"{result.args}: {result.returncode} {result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(("Error: ", "Usage: ")), result.stderr
    return " ".join(result.stderr.split())  # click wraps long lines


@dataclass(frozen=True)
class Installation:
    cwd: Path  # sealgate runs here, with the default ./sealgate-data
    leaf_pem: bytes  # alice's certificate, as 'cert show --pem' prints it

    @property
    def data(self) -> Path:
        return self.cwd / DATA

    def copy(self, target: Path) -> Path:
        """A copy to change: the same CA, master key and database."""
        shutil.copytree(self.data, target / DATA)
        return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    cwd = tmp_path_factory.mktemp("installed")
    for step in (["init"], ["tenant", "add", "acme"],
                 ["domain", "add", "example.com", "--tenant", "acme", "--verified"],
                 ["user", "add", ALICE], ["cert", "issue", ALICE]):
        ok(sealgate(*step, cwd=cwd))
    return Installation(cwd, ok(sealgate("cert", "show", ALICE, "--pem", cwd=cwd)).encode())


# --- init and the master key ---------------------------------------------------------------


def test_init_twice_keeps_the_same_ca_master_key_and_data(installed):
    files = [installed.data / MASTER_KEY_FILE, installed.data / CA_DIR / CA_CERT,
             installed.data / CA_DIR / CA_KEY]
    before = [path.read_bytes() for path in files]
    again = ok(sealgate("init", cwd=installed.cwd))
    assert f"data directory: {installed.data.resolve()}" in again
    assert "internal CA: " in again
    assert [path.read_bytes() for path in files] == before
    assert "acme\t" in ok(sealgate("tenant", "list", cwd=installed.cwd))


def test_the_master_key_file_is_private_and_a_readable_one_is_refused(installed, tmp_path):
    assert (installed.data / MASTER_KEY_FILE).stat().st_mode & 0o777 == 0o600
    copy = installed.copy(tmp_path)
    key_file = copy / DATA / MASTER_KEY_FILE
    key_file.chmod(0o644)
    message = refused(sealgate("cert", "list", cwd=copy))
    assert f"{DATA}/{MASTER_KEY_FILE} is readable by others: chmod 600" in message


# --- help ----------------------------------------------------------------------------------


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, (*prefix, name)))
    return paths


def test_every_verb_and_group_has_help(tmp_path):
    from sealgate.cli import main

    paths = _command_paths(main)
    missing = [path for path in CONTRACT if path not in paths]
    assert not missing, f"verbs of the operator contract missing: {missing}"
    results = side_by_side([([*path, "--help"], tmp_path, None) for path in [(), *paths]])
    for path, result in zip([(), *paths], results, strict=True):
        assert result.returncode == 0, f"{' '.join(path)} --help: {result.stderr}"
        assert result.stdout.startswith("Usage: "), result.stdout
        assert result.stdout.count("\n") > 3  # says something beyond its usage line
    assert not (tmp_path / DATA).exists(), "asking for help must not create anything"


# --- clear errors ----------------------------------------------------------------------------


def test_mistakes_are_refused_clearly_without_a_traceback(installed, tmp_path):
    leaf, notes = tmp_path / "alice.pem", tmp_path / "notes.txt"
    leaf.write_bytes(installed.leaf_pem)
    notes.write_text("these are not the certificates you are looking for\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [  # what the operator did, where, the exit code and what they are told
        (["tenant", "list"], empty, 1,
         f"{DATA} is not initialised: run 'sealgate init' first"),
        (["domain", "add", "example.org", "--tenant", "nosuch"], installed.cwd, 1,
         "no tenant 'nosuch' (see 'sealgate tenant list')"),
        (["user", "add", "bob@example.org"], installed.cwd, 1,
         "the domain of bob@example.org is not hosted here: add it first with "
         "'sealgate domain add example.org --tenant NAME'"),
        (["cert", "show", "nobody@example.com"], installed.cwd, 1,
         "nobody@example.com is not a participating user"),
        (["cert", "import", str(notes)], installed.cwd, 1, "cannot read the certificate(s)"),
        (["trust", "add", str(leaf)], installed.cwd, 1,
         "is not a CA certificate: a trust anchor must be a root or intermediate CA"),
        (["jobs", "run", "nosuch"], installed.cwd, 2,
         "'nosuch' is not one of "),  # followed by the job names
        (["jobs", "run", "rollover", "--now", "next tuesday"], installed.cwd, 2,
         "Invalid value for --now: 'next tuesday' is not an ISO 8601 time"),
    ]
    results = side_by_side([(args, cwd, None) for args, cwd, _, _ in cases])
    for (args, _, code, expected), result in zip(cases, results, strict=True):
        assert expected in refused(result, code), f"sealgate {' '.join(args)}"
    assert not (empty / DATA).exists()


# --- configuration -------------------------------------------------------------------------


def test_config_file_precedence_flag_then_environment_then_working_directory(tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    for name, data_dir in (("flag.toml", "from-flag"), ("env.toml", "from-env"),
                           ("sealgate.toml", "from-cwd")):
        (work / name).write_text(f'[data]\ndir = "{data_dir}"\n')
    env = {"SEALGATE_CONFIG": str(work / "env.toml")}
    results = side_by_side([
        (["--config", "flag.toml", "tenant", "list"], work, env),
        (["tenant", "list"], work, env),
        (["tenant", "list"], work, None),
        (["tenant", "list"], elsewhere, None),
        (["--config", "missing.toml", "tenant", "list"], work, None),
    ])
    chosen = [refused(result) for result in results]
    assert "from-flag is not initialised" in chosen[0]
    assert "from-env is not initialised" in chosen[1]
    assert "from-cwd is not initialised" in chosen[2]
    assert f"{DATA} is not initialised" in chosen[3]
    assert "the configuration file missing.toml does not exist" in chosen[4]


def test_environment_variables_override_the_file(installed, tmp_path):
    (tmp_path / "sealgate.toml").write_text('[data]\ndir = "nowhere"\n')
    listed = sealgate("tenant", "list", cwd=tmp_path,
                      env={"SEALGATE_DATA__DIR": str(installed.data)})
    assert ok(listed).startswith("acme\t")


def test_configuration_mistakes_are_refused_naming_the_key(tmp_path):
    cases = [  # the file, the environment, what the operator is told
        ("[dns]\nnameserver = []\n", None,
         "unknown key(s) in [dns]: nameserver; known: nameservers"),
        ("[dsn]\nnameservers = []\n", None, "unknown configuration section(s): dsn"),
        ("", {"SEALGATE_RELAY__SMARTHST": "127.0.0.1:2600"},
         "unknown key(s) in [relay]: smarthst"),
        ('[dns]\ntimeout = "soon"\n', None, "dns.timeout must be a number, not 'soon'"),
        ('data = "here"\n', {"SEALGATE_DATA__DIR": "there"}, "[data] must be a table of keys"),
    ]
    calls = []
    for number, (config, env, _) in enumerate(cases):
        (tmp_path / f"{number}.toml").write_text(config)
        calls.append((["--config", f"{number}.toml", "tenant", "list"], tmp_path, env))
    for (_, _, expected), result in zip(cases, side_by_side(calls), strict=True):
        assert f"configuration: {expected}" in refused(result)


# --- certificates, DNS and jobs ----------------------------------------------------------------


@pytest.mark.peer
def test_the_shown_certificate_verifies_in_openssl_for_signing(installed, tmp_path):
    chain, leaf = tmp_path / "ca.pem", tmp_path / "alice.pem"
    chain.write_text(ok(sealgate("ca", "export", cwd=installed.cwd)))
    leaf.write_bytes(installed.leaf_pem)
    assert installed.leaf_pem.startswith(b"-----BEGIN CERTIFICATE-----\n")
    result = subprocess.run(["openssl", "verify", "-purpose", "smimesign", "-CAfile", str(chain),
                             str(leaf)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{leaf}: OK"


def test_dns_smimea_prints_the_rfc8162_record(installed):
    lines = ok(sealgate("dns", "smimea", "example.com", cwd=installed.cwd)).splitlines()
    assert len(lines) == 1
    owner, klass, kind, *data = lines[0].split()
    local_part_hash = hashlib.sha256(b"alice").hexdigest()[:56]  # 28 octets
    assert owner == f"{local_part_hash}._smimecert.example.com."
    assert (klass, kind) == ("IN", "SMIMEA")
    record = dns.rrset.from_text(owner, 3600, klass, kind, " ".join(data))[0]
    assert (record.usage, record.selector, record.mtype) == (3, 0, 0)  # DANE-EE, full, exact
    leaf = x509.load_pem_x509_certificate(installed.leaf_pem)
    assert record.cert == leaf.public_bytes(serialization.Encoding.DER)


def test_rollover_job_358_days_on_issues_the_successor(installed, tmp_path):
    copy = installed.copy(tmp_path)
    day_358 = datetime.now(UTC) + timedelta(days=358)
    job = ok(sealgate("jobs", "run", "rollover", "--now", day_358.isoformat(), cwd=copy))
    assert job.strip() == f"rollover: 1 certificate(s) rolled over: {ALICE}"
    listed = ok(sealgate("cert", "list", cwd=copy)).splitlines()
    assert len(listed) == 2
    assert all(line.startswith(f"{ALICE}\town\tvalid\t") for line in listed)
    assert len({line.split("serial ")[1] for line in listed}) == 2
