"""PostgreSQL, the one backend: where the database is, the embedded server, migrations,
the pool (:class:`PostgresDatastore`) and the stores that implement the ports of the
domain packages (``JournalStore``, ``LeaseStore``, ``OffsetStore``, ``HistoryStore``).

Only this package imports asyncpg. Import from here, not from its modules.
"""

from cos.postgres.control import ControlListener
from cos.postgres.database import DatabaseTarget, resolve_target, wait_for_database
from cos.postgres.datastore import PostgresDatastore
from cos.postgres.embedded import EmbeddedPostgres
from cos.postgres.history import PostgresHistoryStore
from cos.postgres.journal import JOURNAL_CHANNEL, PostgresJournalStore
from cos.postgres.layout import ShardCountError, pin_shard_count
from cos.postgres.leases import PostgresLeaseStore, read_leases
from cos.postgres.migrate import MigrationError, migrate
from cos.postgres.offsets import PostgresOffsetStore
from cos.postgres.settings import PoolLimits

__all__ = [
    "JOURNAL_CHANNEL",
    "ControlListener",
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
