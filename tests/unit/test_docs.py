"""The docs stay true to the code."""

from __future__ import annotations

from cli.settings_help import setting_rows
from cos.settings import CosSettings, DatabaseSettings
from tests.support import ROOT


def test_configuration_doc_lists_every_setting() -> None:
    doc = (ROOT / "docs/configuration.md").read_text()
    cells = {line.split("`")[1] for line in doc.splitlines() if line.startswith("| `")}
    documented = {name for name in cells if name.startswith(("COS_", "LOG_"))}
    in_code = {env for env, _, _ in setting_rows(CosSettings) + setting_rows(DatabaseSettings)}
    assert documented == in_code


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "./scripts/run.sh" in readme
    assert "./scripts/test.sh" in readme
    ci = (ROOT / ".ci/run").read_text()
    assert "scripts/test.sh" in ci
