"""The embedded PostgreSQL used when no database is configured (``pgserver``)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server in a local data folder, from the ``pgserver`` package."""

    def __init__(self, data_dir: Path) -> None:
        self._given = data_dir  # as configured (logged: relative paths stay relative)
        self.data_dir = data_dir.resolve()
        self._server: Any = None  # pgserver's server object (pgserver has no types)

    def start(self) -> str:
        """Start (or reuse) the server; returns its connection URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # pgserver logs every initdb/pg_ctl command line at INFO and warns when
        # XDG_RUNTIME_DIR is unset (it falls back to /tmp): keep only problems.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver import get_server  # type: ignore[attr-defined]

            self._server = get_server(self.data_dir, cleanup_mode="stop")
            url: str = self._server.get_uri()
        log.info("embedded PostgreSQL running in %s", self._given)
        return url

    def stop(self) -> None:
        """Stop the server if this process started it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
