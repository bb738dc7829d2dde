"""The configuration reference is made from the code and cannot drift from it."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from click.testing import CliRunner

from keydir import config, config_reference
from sealgate.cli import main

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_document_carries_the_current_reference():
    text = DOCUMENT.read_text(encoding="utf-8")
    assert config_reference.splice(text) == text, (
        "docs/configuration.md is behind the code: run "
        "'sealgate config reference --write docs/configuration.md'")


def test_every_key_says_what_it_does():
    for name, kind in config._SECTION_TYPES.items():
        comments = config_reference.field_comments(kind)
        missing = [f.name for f in fields(kind) if not comments.get(f.name)]
        assert missing == [], f"[{name}] keys without a comment in keydir/config.py: {missing}"


def test_the_defaults_shown_are_what_the_embedded_default_is():
    shown = tomllib.loads(config_reference.default_toml())
    assert config.Config.from_mapping(shown) == config.Config()


def test_the_reference_names_each_environment_variable():
    text = config_reference.reference()
    assert "`SEALGATE_RELAY__SMARTHOST`" in text
    assert "`SEALGATE_BILLING__TIERS`" in text


def test_the_cli_prints_and_renews_the_reference(tmp_path):
    printed = CliRunner().invoke(main, ["config", "reference"])
    assert printed.exit_code == 0 and printed.output == config_reference.reference()
    document = tmp_path / "configuration.md"
    document.write_text(f"# Title\n\n{config_reference.BEGIN}\nold\n{config_reference.END}\n"
                        "after\n")
    renewed = CliRunner().invoke(main, ["config", "reference", "--write", str(document)])
    assert renewed.exit_code == 0
    text = document.read_text()
    assert text.startswith("# Title\n") and text.endswith("after\n") and "old" not in text
    bare = tmp_path / "bare.md"
    bare.write_text("nothing generated here\n")
    refused = CliRunner().invoke(main, ["config", "reference", "--write", str(bare)])
    assert refused.exit_code != 0 and "add the lines" in refused.output
