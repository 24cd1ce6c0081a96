"""The journal, the port (``JournalStore`` and its records), and group commit onto it.

The PostgreSQL implementation is ``cos.postgres.PostgresJournalStore``.
"""
