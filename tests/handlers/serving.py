"""Running a handler process of the tests or benchmarks until it is signalled."""

from __future__ import annotations

import asyncio
import signal

import grpc


async def serve_until_signalled(server: grpc.aio.Server, banner: str) -> None:
    """Start ``server``, print ``banner`` (the line the parent process waits for), and
    stop on SIGTERM or SIGINT."""
    await server.start()
    print(banner, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
