"""CommitAnnouncer: commits made while an announcement is in flight share the next one."""

from __future__ import annotations

from cos.subscription import CommitAnnouncer
from tests.support.fakes import FakeAnnouncing


async def test_commits_during_an_announcement_share_the_next() -> None:
    journal = FakeAnnouncing()
    announcer = CommitAnnouncer(journal)
    announcer.start()
    announcer.committed(4)
    await journal.arrived.wait()
    journal.arrived.clear()
    for shard in (2, 7, 2):
        announcer.committed(shard)
    journal.release.set()
    await journal.arrived.wait()
    assert journal.sent == [[4], [2, 7]]
    await announcer.close()
