"""PostgreSQL, the one backend: where the database is, the embedded server, migrations,
the pool (:class:`PostgresDatastore`) and the stores that implement the ports of the
domain packages (``JournalStore``, ``LeaseStore``, ``OffsetStore``, ``HistoryStore``).

Only this package imports asyncpg. Import from here, not from its modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cos.exports import lazy_exports

if TYPE_CHECKING:
    from cos.postgres._control import ControlListener
    from cos.postgres._database import DatabaseTarget, resolve_target, wait_for_database
    from cos.postgres._datastore import PostgresDatastore
    from cos.postgres._embedded import EmbeddedPostgres
    from cos.postgres._history import PostgresHistoryStore
    from cos.postgres._journal import JOURNAL_CHANNEL, PostgresJournalStore
    from cos.postgres._layout import ShardCountError, pin_shard_count
    from cos.postgres._leases import PostgresLeaseStore, read_leases
    from cos.postgres._migrate import MigrationError, migrate
    from cos.postgres._offsets import PostgresOffsetStore
    from cos.postgres._settings import DatabaseSettings, PoolLimits

__all__ = [
    "JOURNAL_CHANNEL",
    "ControlListener",
    "DatabaseSettings",
    "DatabaseTarget",
    "EmbeddedPostgres",
    "MigrationError",
    "PoolLimits",
    "PostgresDatastore",
    "PostgresHistoryStore",
    "PostgresJournalStore",
    "PostgresLeaseStore",
    "PostgresOffsetStore",
    "ShardCountError",
    "migrate",
    "pin_shard_count",
    "read_leases",
    "resolve_target",
    "wait_for_database",
]

__getattr__ = lazy_exports(__name__)
