"""Shards spread over a real multi-node Ray cluster: routing, joins, failures, fencing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

import asyncpg
import psutil
import ray

from chief_of_state.v1 import service_pb2
from cos.sharding import shard_of
from tests.support.checks import (
    Load,
    assert_journal_consistent,
    assert_read_side_complete,
    journal_revisions,
)
from tests.support.commands import request, state_of
from tests.support.readsides import start_reader
from tests.support.runtimes import ClusterRuntime, Nodes
from tests.support.serve import run_cli
from tests.support.waiting import wait_until

__all__ = ["start_reader"]  # the fixture, for pytest


async def test_three_nodes_own_every_shard_once_and_answer_alike(cluster_cos: Any) -> None:
    cos: ClusterRuntime = await cluster_cos()
    table = await cos.table()
    assert [o.shard for o in table] == list(range(16))
    per_host = Counter(o.host_id for o in table)
    assert sorted(per_host.values()) == [5, 5, 6]
    assert set(per_host) == set(cos.runtime.hosts)
    hosts = list(cos.stubs)
    for i in range(12):
        entity_id = f"spread-{i}"
        sent = await cos.stubs[hosts[i % 3]].ProcessCommand(request(entity_id, add=[i, 1]))
        for host_id in hosts:
            got = await cos.stubs[host_id].GetState(
                service_pb2.GetStateRequest(entity_id=entity_id)
            )
            assert (got.state, got.meta) == (sent.state, sent.meta), host_id
        again = await cos.stubs[hosts[(i + 1) % 3]].ProcessCommand(request(entity_id, add=[1]))
        assert again.meta.revision_number == 3  # the first command made two events
        assert state_of(again)["total"] == i + 2


def first_worker(nodes: Nodes) -> Any:
    return min(nodes.cluster.worker_nodes, key=lambda node: node.node_id)


def host_of(cos: ClusterRuntime, node_id: str) -> str:
    return next(h for h in cos.runtime.hosts if h.endswith(node_id[:12]))


async def test_a_joining_node_takes_its_share_during_load(
    cluster_cos: Any, nodes: Nodes, db: asyncpg.Connection, start_reader: Any
) -> None:
    reader = start_reader("rs-join")
    cos: ClusterRuntime = await cluster_cos(read_side_enabled=True, read_sides=(reader.config(),))
    load = Load(cos.stubs, [f"join-{i}" for i in range(40)])
    load.start()
    await asyncio.sleep(2)
    new_host = await cos.join(nodes.add())
    await asyncio.sleep(3)
    await load.stop()
    owners = Counter(o.host_id for o in await cos.table())
    assert owners[new_host] == 4 and sorted(owners.values()) == [4, 4, 4, 4]
    assert set(load.errors) <= {"UNAVAILABLE"}, load.errors
    assert sum(len(a) for a in load.acked.values()) > 50
    revisions = await journal_revisions(db)
    assert_journal_consistent(revisions, load)
    # The read side's runners moved with the shards: still every event, in order.
    await assert_read_side_complete(reader, revisions)


async def test_a_graceful_leave_hands_shards_over_during_load(
    cluster_cos: Any, nodes: Nodes, db: asyncpg.Connection
) -> None:
    cos: ClusterRuntime = await cluster_cos()
    leaving = host_of(cos, first_worker(nodes).node_id)
    load = Load(cos.stubs, [f"leave-{i}" for i in range(40)])
    load.targets = [h for h in cos.stubs if h != leaving]
    load.start()
    await asyncio.sleep(2)
    await asyncio.to_thread(cos.runtime.leave, leaving)
    await asyncio.sleep(2)
    await load.stop()
    owners = Counter(o.host_id for o in await cos.table())
    assert leaving not in owners and sorted(owners.values()) == [8, 8]
    assert set(load.errors) <= {"UNAVAILABLE"}, load.errors
    assert_journal_consistent(await journal_revisions(db), load)


async def test_a_lost_node_is_replaced_within_the_bound_and_read_sides_go_on(
    cluster_cos: Any, nodes: Nodes, db: asyncpg.Connection, start_reader: Any
) -> None:
    reader = start_reader("rs-cluster")
    cos: ClusterRuntime = await cluster_cos(
        read_side_enabled=True,
        read_sides=(reader.config(),),
        read_side_retry_min_seconds=0.05,
        read_side_retry_max_seconds=0.5,
        host_failure_timeout_seconds=8.0,  # a failover longer than the old 5 s retry window
    )
    victim_node = first_worker(nodes)
    victim = host_of(cos, victim_node.node_id)
    load = Load(cos.stubs, [f"lost-{i}" for i in range(40)])
    load.targets = [h for h in cos.stubs if h != victim]
    load.start()
    await asyncio.sleep(2)
    victims_shards = {o.shard for o in await cos.table() if o.host_id == victim}
    orphans = [e for e in (f"orphan-{i}" for i in range(500)) if shard_of(e, 16) in victims_shards]
    victim_pid = await asyncio.to_thread(ray.get, cos.runtime.hosts[victim].pid.remote())
    killed_at = time.monotonic()
    nodes.cluster.remove_node(victim_node, allow_graceful=False)

    # Sent to live nodes for shards of the node that died: each is retried until the
    # shard's new owner answers, within the caller's deadline. (A command that reached
    # the host while it was dying may have run there: it fails, never runs twice.)
    async def host_process_gone() -> bool:
        return not psutil.pid_exists(victim_pid)

    await wait_until(host_process_gone, 30, "the lost host's process to end")
    print(f"the lost host's process ended {time.monotonic() - killed_at:.1f} s after the kill")
    live = [h for h in cos.stubs if h != victim]
    sent = await asyncio.gather(
        *(
            cos.stubs[live[i % 2]].ProcessCommand(request(e, add=[1]), timeout=40)
            for i, e in enumerate(orphans[:6])
        ),
        return_exceptions=True,
    )
    print(f"commands to its shards answered {time.monotonic() - killed_at:.1f} s after the kill")
    assert [getattr(r, "meta", r) for r in sent if not hasattr(r, "meta")] == []
    assert {r.meta.revision_number for r in sent} == {1}  # type: ignore[union-attr]

    async def replaced() -> bool:
        table = await cos.table()
        return len(table) == 16 and all(o.host_id != victim for o in table)

    took = await wait_until(replaced, 40, "the lost node's shards to be owned again")
    print(f"failover took {took:.1f} s")
    # Our own detection, plus Ray's when the coordinator lived on that node, plus slack.
    bound = cos.settings.cluster.host_failure_timeout_seconds + 6 + 10
    assert took < bound, f"failover took {took:.1f} s"
    await asyncio.sleep(2)
    await load.stop()
    revisions = await journal_revisions(db)
    assert_journal_consistent(revisions, load)
    await assert_read_side_complete(reader, revisions)


async def test_a_partitioned_host_has_its_next_write_refused(
    cluster_cos: Any, nodes: Nodes, db: asyncpg.Connection
) -> None:
    cos: ClusterRuntime = await cluster_cos(host_failure_timeout_seconds=2.0)
    victim = host_of(cos, first_worker(nodes).node_id)
    table = await cos.table()
    shard = next(o.shard for o in table if o.host_id == victim)
    entity_id = next(e for e in (f"part-{i}" for i in range(10_000)) if shard_of(e, 16) == shard)
    first = await cos.stubs[victim].ProcessCommand(request(entity_id, add=[1]))
    assert first.meta.revision_number == 1
    pid = await asyncio.to_thread(ray.get, cos.runtime.hosts[victim].pid.remote())
    os.kill(pid, signal.SIGSTOP)  # the host is cut off: alive, but silent
    try:

        async def moved() -> bool:
            owners = {o.shard: o.host_id for o in await cos.table()}
            return owners.get(shard) not in (None, victim)

        await wait_until(moved, 30, "the shard to move away from the silent host")
        other = next(h for h in cos.stubs if h != victim)
        second = await cos.stubs[other].ProcessCommand(request(entity_id, add=[1]))
        assert second.meta.revision_number == 2
    finally:
        os.kill(pid, signal.SIGCONT)
    # The old owner still believes it owns the shard and has revision 1 cached:
    # its write is refused by the database, and the command runs on the new owner.
    third = await cos.stubs[victim].ProcessCommand(request(entity_id, add=[1]), timeout=30)
    assert third.meta.revision_number == 3
    stats = await asyncio.to_thread(ray.get, cos.runtime.hosts[victim].stats.remote())
    assert stats["fenced_writes"] >= 1
    rows = await db.fetch("SELECT revision FROM cos_journal WHERE entity_id = $1", entity_id)
    assert sorted(r["revision"] for r in rows) == [1, 2, 3]


async def test_a_coordinator_restart_keeps_the_assignment(cluster_cos: Any) -> None:
    cos: ClusterRuntime = await cluster_cos()
    before = [(o.shard, o.host_id, o.epoch) for o in await cos.table()]
    ray.kill(cos.runtime.coordinator, no_restart=False)

    async def answers() -> bool:
        try:
            return bool(await cos.table())
        except Exception:
            return False

    await wait_until(answers, 60, "the restarted coordinator")
    after = [(o.shard, o.host_id, o.epoch) for o in await cos.table()]
    assert after == before
    for i, stub in enumerate(cos.stubs.values()):
        reply = await stub.ProcessCommand(request(f"after-restart-{i}", add=[1]))
        assert reply.meta.revision_number == 1


def table_rows(output: str) -> list[list[str]]:
    """The data rows of a printed shard table."""
    rows = [line.replace("│", " ").split() for line in output.splitlines()]
    return [r for r in rows if len(r) == 5 and all(r[i].isdigit() for i in (0, 3, 4))]


async def test_cos_shards_and_cos_cli_cluster_shards_print_the_table(
    cluster_cos: Any, nodes: Nodes
) -> None:
    cos: ClusterRuntime = await cluster_cos()
    host_ids = list(cos.stubs)
    await cos.stubs[host_ids[0]].ProcessCommand(request("shown", add=[1]))
    table = {o.shard: o for o in await cos.table()}
    name = cos.settings.cluster.cluster_name
    printed = [
        await run_cli(
            "cli.main", "shards", "--address", nodes.cluster.address, "--cluster-name", name
        )
    ]
    for host_id in host_ids:  # any node's port answers
        port = cos.runtime.addresses[host_id].rsplit(":", 1)[1]
        printed.append(
            await run_cli(
                "cli.admin", "cluster", "shards", "--cos-host", "127.0.0.1", "--cos-port", port
            )
        )
    for result in printed:
        assert result.returncode == 0, result.stderr
        assert "16 shards on 3 hosts" in result.stdout
        rows = table_rows(result.stdout)
        assert sorted(int(r[0]) for r in rows) == list(range(16))
        for shard_text, host_id, address, epoch, _active in rows:
            owner = table[int(shard_text)]
            assert (host_id, address, int(epoch)) == (
                owner.host_id,
                cos.runtime.addresses[owner.host_id],
                owner.epoch,
            )
        assert sum(int(r[4]) for r in rows) == 1
    missing = await run_cli(
        "cli.main", "shards", "--address", nodes.cluster.address, "--cluster-name", "nope"
    )
    assert missing.returncode == 2 and "no runtime named 'nope'" in missing.stderr
