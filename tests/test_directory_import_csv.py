"""CSV directory import and the ``sealgate directory`` verbs (Graph through the stand-in)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from keydir import tenancy
from keydir.config import load_config
from keydir.directory_import.csv_source import read_csv
from keydir.directory_import.sync import SourceEntry
from keydir.service import open_directory
from sealgate.cli import main
from tests.graph_server import CLIENT_ID, CLIENT_SECRET, ENTRA_TENANT, GraphStandIn
from tests.test_directory_import_graph import people


def test_csv_rows_become_entries_and_wrong_lines_are_reported_by_number():
    report = read_csv(
        "\ufeffAddress;display_name;enabled\n"
        "Alice@Example.com;Alice Adams;yes\n"
        "bob@example.com;Bob Brown;\n"
        "\n"
        "not-an-address;Nobody;true\n"
        "carol@example.com;Carol;maybe\n"
        "alice@example.com;Alice again;true\n"
        '"dave@example.com";"Dunn; Dave";false\n'
        "erin@example.com;Erin\n".encode())
    assert report.entries == [
        SourceEntry("alice@example.com", "Alice Adams", "", True),
        SourceEntry("bob@example.com", "Bob Brown", "", True),
        SourceEntry("dave@example.com", "Dunn; Dave", "", False)]
    assert [str(problem) for problem in report.problems] == [
        "line 5: 'not-an-address' is not an e-mail address (expected name@domain.tld)",
        "line 6: enabled is 'maybe': use true or false (empty means true)",
        "line 7: alice@example.com is listed already on line 2",
        "line 9: 2 field(s), the header has 3 (a ';' inside a name needs quotes)"]


@pytest.mark.parametrize(("data", "message"), [
    (b"mail,name\nalice@example.com,Alice\n", "line 1: no 'address' column in the header"),
    (b"address,department\nalice@example.com,Sales\n", "line 1: unknown column(s) department"),
    (b"", "line 1: the file is empty"),
    ("address\nj\xf6rg@example.com\n".encode("latin-1"), "line 1: the file is not UTF-8"),
])
def test_a_wrong_file_says_what_to_fix(data, message):
    report = read_csv(data)
    assert report.entries == []
    assert str(report.problems[0]).startswith(message)


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in [n for n in os.environ if n.startswith("SEALGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SEALGATE_CA__INTERNAL_CA_KEY_TYPE", "rsa2048")
    config = tmp_path / "sealgate.toml"
    config.write_text(f'[data]\ndir = "{tmp_path / "data"}"\n')
    for args in (["init"], ["tenant", "add", "acme"],
                 ["domain", "add", "acme.example", "--tenant", "acme", "--verified"]):
        assert sealgate(config, *args)[0] == 0
    yield config


def sealgate(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def participating(config: Path) -> list[str]:
    directory = open_directory(load_config(str(config)))
    try:
        with directory.transaction() as session:
            return [user.address for user in tenancy.list_users(session)]
    finally:
        directory.close()


def test_csv_import_strict_dry_run_participate_and_list(installation, tmp_path):
    people_csv = tmp_path / "people.csv"
    people_csv.write_text("address,display_name,enabled\nalice@acme.example,Alice,true\n"
                          "bob@acme.example,Bob,false\nzed@partner.example,Zed,\n"
                          "oops,Oops,true\n")
    code, output = sealgate(installation, "directory", "import", "csv", str(people_csv),
                            "--tenant", "acme", "--strict")
    assert code != 0
    assert "people.csv: line 5: 'oops' is not an e-mail address" in output
    assert "nothing was imported (--strict)" in output
    assert sealgate(installation, "directory", "list", "--tenant", "acme")[1] == "0 entries\n"

    code, output = sealgate(installation, "import", "csv", str(people_csv), "--tenant", "acme",
                            "--dry-run", "--participate")
    assert code == 0, output
    assert "+ alice@acme.example\tAlice\n" in output
    assert "+ bob@acme.example\tBob\t(disabled)\n" in output
    assert "skipped zed@partner.example: not in a domain of this tenant" in output
    assert "participating alice@acme.example\n" in output
    assert "(dry run: nothing written)" in output
    assert participating(installation) == []

    code, output = sealgate(installation, "directory", "import", "csv", str(people_csv),
                            "--tenant", "acme")
    assert code == 0, output
    assert "2 added, 0 changed, 0 removed" in output and "1 line(s) skipped" in output
    code, output = sealgate(installation, "directory", "list", "--tenant", "acme")
    assert output.splitlines() == ["alice@acme.example\tAlice\tcsv\tenabled\t-",
                                   "bob@acme.example\tBob\tcsv\tdisabled\t-", "2 entries"]
    assert participating(installation) == []  # not without --participate

    people_csv.write_text("address,display_name\n")
    code, output = sealgate(installation, "directory", "import", "csv", str(people_csv),
                            "--tenant", "acme")
    assert code != 0
    assert "the csv source lists no addresses at all; nothing was changed (importing it " \
           "would mark all 2 entries removed)" in output

    people_csv.write_text("address\nalice@acme.example\n")
    code, output = sealgate(installation, "directory", "import", "csv", str(people_csv),
                            "--tenant", "acme", "--participate")
    assert code == 0, output
    assert "~ alice@acme.example\tdisplay_name: 'Alice' -> ''" in output
    assert "- bob@acme.example" in output
    assert participating(installation) == ["alice@acme.example"]
    code, output = sealgate(installation, "directory", "list", "--tenant", "acme", "--all")
    assert "alice@acme.example\t\tcsv\tenabled\tparticipating" in output
    assert "bob@acme.example\tBob\tcsv\tremoved " in output


def test_graph_source_and_import_from_the_command_line(installation, tmp_path, monkeypatch):
    server = GraphStandIn(tmp_path, people()).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
    try:
        code, output = sealgate(installation, "directory", "import", "graph", "--tenant", "acme")
        assert code != 0
        assert "has no Microsoft Graph source: set one with 'sealgate directory source " \
               "set-graph --tenant acme" in output
        secret = tmp_path / "secret.txt"
        secret.write_text(CLIENT_SECRET + "\n")
        code, output = sealgate(installation, "directory", "source", "set-graph", "--tenant",
                                "acme", "--entra-tenant", ENTRA_TENANT, "--client-id",
                                CLIENT_ID, "--client-secret-file", str(secret), "--graph-url",
                                server.url, "--authority-url", server.url)
        assert code == 0, output
        code, output = sealgate(installation, "directory", "import", "graph", "--tenant",
                                "acme", "--dry-run")
        assert code == 0, output
        assert "Microsoft Graph: 6 user(s) read, 1 without a mail address" in output
        assert "6 added" in output and "(dry run: nothing written)" in output
        code, output = sealgate(installation, "directory", "import", "graph", "--tenant", "acme")
        assert code == 0, output
        code, output = sealgate(installation, "directory", "list", "--tenant", "acme")
        assert "a.adams@acme.example\tAlice Adams\tgraph\tenabled, alias\t-" in output
        code, output = sealgate(installation, "directory", "source", "show", "--tenant", "acme")
        assert "last run: " in output and "6 user(s): 6 added" in output
        assert CLIENT_SECRET not in output

        secret.write_text("wrong\n")
        sealgate(installation, "directory", "source", "set-graph", "--tenant", "acme",
                 "--entra-tenant", ENTRA_TENANT, "--client-id", CLIENT_ID,
                 "--client-secret-file", str(secret), "--graph-url", server.url,
                 "--authority-url", server.url)
        code, output = sealgate(installation, "directory", "import", "graph", "--tenant", "acme")
        assert code != 0
        assert "Error: Entra ID refused the token request" in output
        assert "Traceback" not in output
    finally:
        server.stop()


def test_graph_urls_must_be_https(installation, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    code, output = sealgate(installation, "directory", "source", "set-graph", "--tenant", "acme",
                            "--entra-tenant", ENTRA_TENANT, "--client-id", CLIENT_ID,
                            "--client-secret-file", str(secret), "--graph-url",
                            "http://graph.example")
    assert code != 0
    assert "Graph URL 'http://graph.example' is not an https:// URL" in output
