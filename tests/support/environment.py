"""A process environment with no runtime variable set but the two that are required."""

from __future__ import annotations

import pytest

REQUIRED = {"COS_WRITE_SIDE_HOST": "handler", "COS_WRITE_SIDE_PORT": "50051"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("COS_") or key in ("LOG_LEVEL", "LOG_STYLE", "POD_IP"):
            monkeypatch.delenv(key)
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
