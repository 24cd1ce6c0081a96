"""The docs stay true to the code."""

from __future__ import annotations

import re

from cli.settings_help import all_setting_rows
from cos.environment import OBSOLETE, known_variables
from tests.support.processes import ROOT


def test_configuration_doc_lists_every_setting() -> None:
    doc = (ROOT / "docs/configuration.md").read_text()
    cells = {line.split("`")[1] for line in doc.splitlines() if line.startswith("| `")}
    documented = {n for n in cells if n.startswith(("COS_", "LOG_")) or n == "POD_IP"}
    in_code = {env for env, _, _ in all_setting_rows()}
    assert documented == in_code


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "./scripts/run.sh" in readme
    assert "./scripts/test.sh" in readme
    ci = (ROOT / ".ci/run").read_text()
    assert "scripts/test.sh" in ci


# Every variable Chief of State 2.5.7 documents (docs/configuration.md, docs/*-deployment.md).
CHIEF_OF_STATE_VARIABLES = [
    "LOG_LEVEL",
    "LOG_STYLE",
    "COS_ADDRESS",
    "COS_PORT",
    "COS_DEPLOYMENT_MODE",
    "COS_DB_USER",
    "COS_DB_PASSWORD",
    "COS_DB_HOST",
    "COS_DB_PORT",
    "COS_DB_NAME",
    "COS_DB_SCHEMA",
    "COS_DB_POOL_MAX_SIZE",
    "COS_DB_POOL_MIN_IDLE_CONNECTIONS",
    "COS_DB_POOL_IDLE_TIMEOUT_MS",
    "COS_DB_POOL_MAX_LIFETIME_MS",
    "COS_SNAPSHOT_FREQUENCY",
    "COS_DISABLE_SNAPSHOT",
    "COS_NUM_SNAPSHOTS_TO_RETAIN",
    "COS_READ_SIDE_ENABLED",
    "COS_ENCRYPTION_CLASS",
    "COS_WRITE_SIDE_HOST",
    "COS_WRITE_SIDE_PORT",
    "COS_WRITE_SIDE_USE_TLS",
    "COS_WRITE_SIDE_PROTO_VALIDATION",
    "COS_WRITE_SIDE_STATE_PROTOS",
    "COS_WRITE_SIDE_EVENT_PROTOS",
    "COS_SERVICE_NAME",
    "COS_WRITE_SIDE_PROPAGATED_HEADERS",
    "COS_WRITE_PERSISTED_HEADERS",
    "COS_JOURNAL_LOGICAL_DELETION",
    "COS_COMMAND_HANDLER_TIMEOUT",
    "COS_GRPC_CALLS_TIMEOUT",
    "COS_READ_SIDE_CONFIG",
    "POD_IP",
    "COS_KUBERNETES_APP_LABEL",
    "COS_REPLICA_COUNT",
    "COS_NUM_SHARDS",
]


def test_coming_from_chief_of_state_covers_every_variable() -> None:
    page = (ROOT / "docs/coming-from-chief-of-state.md").read_text()
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", page))
    assert set(CHIEF_OF_STATE_VARIABLES) | set(OBSOLETE) <= named
    # Whatever CoS names that is a setting here too is in configuration.md.
    assert set(CHIEF_OF_STATE_VARIABLES) - set(OBSOLETE) <= known_variables()


def test_readme_sample_log_is_not_of_one_machine() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "embedded PostgreSQL running in .cos-data/postgres" in readme
    assert re.search(r"cos serve ready: \S+ listening on 127\.0\.0\.1:9000", readme)
    assert not re.search(r"(/work/|/home/|/root/|/tmp/)", readme)


def test_readme_layout_names_every_part_of_cos() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("\n## ") if "\n## " in layout else len(layout)]
    parts = [
        f"cos/{path.name}/" if path.is_dir() else f"cos/{path.name}"
        for path in sorted((ROOT / "cos").iterdir())
        if path.name not in {"__init__.py", "__pycache__", "v1", "py.typed"}
        and (path.is_dir() or path.suffix == ".py")
    ]
    assert [part for part in parts if f"`{part}`" not in layout] == []
