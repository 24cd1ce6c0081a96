"""Subscribers in a process of their own (so that reading them takes nothing from the
test's own client): ``--streams`` SubscribeAll streams read as fast as they come and
``--slow`` ones that pause after each message.

    python -m tests.support.subscriber_load --address 127.0.0.1:PORT --streams 100 --slow 1

It prints ``subscribed`` once every stream is open, then reads. A line on stdin with a count
N asks for the outcome: once every stream has N events it prints one JSON line,
``[[count, digest, in_order], ...]`` per stream (digest: :func:`digest` of its keys), and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Iterable

import grpc

from cos.v1 import subscription_pb2, subscription_pb2_grpc
from tests.support.subscriptions import Event, Key, check_order, keys

SLOW_PAUSE = 0.02  # seconds a slow subscriber waits after each message


def digest(found: Iterable[Key]) -> str:
    """The same for the same set of (entity, revision) keys."""
    text = "\n".join(f"{entity}:{revision}" for entity, revision in sorted(found))
    return hashlib.sha256(text.encode()).hexdigest()


def in_order(events: list[Event]) -> bool:
    try:
        check_order(events)
    except AssertionError:
        return False
    return True


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--slow", type=int, default=1)
    parser.add_argument("--nice", type=int, default=0, help="added to the nice value")
    args = parser.parse_args()
    os.nice(args.nice)
    channel = grpc.aio.insecure_channel(args.address)
    stub = subscription_pb2_grpc.SubscriptionServiceStub(channel)
    start = subscription_pb2.SubscribeAllRequest(from_beginning=True)
    calls = [stub.SubscribeAll(start) for _ in range(args.streams + args.slow)]
    await asyncio.gather(*(call.initial_metadata() for call in calls))
    got: list[list[Event]] = [[] for _ in calls]

    async def reading(index: int, pause: float) -> None:
        async for message in calls[index]:
            got[index].append(message)
            if pause:
                await asyncio.sleep(pause)

    readers = [
        asyncio.create_task(reading(i, SLOW_PAUSE if i >= args.streams else 0.0))
        for i in range(len(calls))
    ]
    print("subscribed", flush=True)
    wanted = int(await asyncio.to_thread(sys.stdin.readline))
    # Until every stream has them, or one ended (its count then tells).
    while any(len(events) < wanted for events in got) and not any(t.done() for t in readers):
        await asyncio.sleep(0.05)
    outcome = [[len(events), digest(keys(events)), in_order(events)] for events in got]
    print(json.dumps(outcome), flush=True)
    for task in readers:
        task.cancel()
    await channel.close()


if __name__ == "__main__":
    asyncio.run(main())
