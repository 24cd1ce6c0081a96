"""The floor: the least work a correct ProcessCommand can do, to compare the runtime against.

One asyncio process, no runtime machinery. For each command it calls the write handler's
``HandleCommand`` then ``HandleEvent`` over one shared channel, commits the ``EventWrapper``
bytes with one autocommit ``INSERT`` (default ``synchronous_commit``, so the reply waits for
the WAL flush), keeps the state in a dict and replies with state and meta.

It follows the CoS semantics the runtime keeps (empty prior state, revision 0, no-op when no
event, several events in one statement), so the two do the same work per command. It creates
its own table in its own schema at start: this is a bench tool, not the runtime. Its event
loop is uvloop when uvloop is installed, as the runtime's node is (Ray picks uvloop then).

Run: ``python bench/floor.py --port 9100 --write-side 127.0.0.1:9200``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import grpc
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from chief_of_state.v1 import (
    common_pb2,
    persistence_pb2,
    service_pb2,
    service_pb2_grpc,
    writeside_pb2,
    writeside_pb2_grpc,
)

_Reply = TypeVar("_Reply")

# One statement for all the events of a command: autocommit makes them one transaction.
_INSERT_EVENTS = """
INSERT INTO {schema}.events (entity_id, revision, event)
SELECT $1, revision, event FROM unnest($2::bigint[], $3::bytea[]) AS e(revision, event)
"""


@dataclass(frozen=True)
class FloorSettings:
    """Where the floor listens, which handler it calls and where it journals."""

    host: str
    port: int
    write_side: str
    db_host: str
    db_port: int
    db_user: str
    db_password: str | None
    db_name: str
    schema: str
    pool_size: int


@dataclass
class _Entity:
    """The current state of one entity, and the lock that keeps its commands in order."""

    state: any_pb2.Any
    meta: common_pb2.MetaData
    lock: asyncio.Lock


class _HandlerError(Exception):
    """A write handler call failed; carries its status to pass on to the caller unchanged."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailers: tuple[tuple[str, str | bytes], ...] = (),
    ) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailers = trailers


class FloorServicer(service_pb2_grpc.ChiefOfStateServiceServicer):
    """ProcessCommand as handler calls, one INSERT and a dict; GetState from the dict."""

    def __init__(
        self,
        handler: writeside_pb2_grpc.WriteSideHandlerServiceStub,
        pool: asyncpg.Pool,
        schema: str,
    ) -> None:
        self._handler = handler
        self._pool = pool
        self._insert = _INSERT_EVENTS.format(schema=schema)
        self._entities: dict[str, _Entity] = {}

    async def ProcessCommand(
        self, request: service_pb2.ProcessCommandRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ProcessCommandResponse:
        """Runs the command against the entity and journals the events before replying."""
        if not request.entity_id or not request.HasField("command"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "entity_id and command needed")
        entity = self._entity(request.entity_id)
        # The lock costs next to nothing and keeps revisions right whatever the load does;
        # bench/load.py gives each entity to one worker, so it is never contended there.
        async with entity.lock:
            try:
                await self._process(entity, request.command)
            except _HandlerError as exc:
                # The trailers carry grpc-status-details-bin, as the runtime passes them on.
                await context.abort(exc.code, exc.details, exc.trailers)
        return service_pb2.ProcessCommandResponse(state=entity.state, meta=entity.meta)

    async def GetState(
        self, request: service_pb2.GetStateRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.GetStateResponse:
        """Answers the state in memory; NOT_FOUND for an entity with no event yet."""
        entity = self._entities.get(request.entity_id)
        if entity is None or entity.meta.revision_number == 0:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no entity {request.entity_id!r}")
        assert entity is not None  # abort raises; this tells the type checker
        return service_pb2.GetStateResponse(state=entity.state, meta=entity.meta)

    def _entity(self, entity_id: str) -> _Entity:
        entity = self._entities.get(entity_id)
        if entity is None:
            empty = any_pb2.Any()
            empty.Pack(empty_pb2.Empty())
            meta = common_pb2.MetaData(entity_id=entity_id, revision_number=0)
            entity = _Entity(state=empty, meta=meta, lock=asyncio.Lock())
            self._entities[entity_id] = entity
        return entity

    async def _process(self, entity: _Entity, command: any_pb2.Any) -> None:
        reply: writeside_pb2.HandleCommandResponse = await self._call(
            self._handler.HandleCommand(
                writeside_pb2.HandleCommandRequest(
                    command=command, prior_state=entity.state, prior_event_meta=entity.meta
                )
            )
        )
        events = [e for e in reply.events if e.type_url] or (
            [reply.event] if reply.event.type_url else []
        )
        state, meta, wrappers = entity.state, entity.meta, []
        for event in events:
            meta = _next_meta(meta)
            state = await self._apply(event, state, meta)
            wrapper = persistence_pb2.EventWrapper(event=event, resulting_state=state, meta=meta)
            wrappers.append(wrapper.SerializeToString())
        if wrappers:
            first = entity.meta.revision_number + 1
            revisions = list(range(first, first + len(wrappers)))
            await self._pool.execute(self._insert, meta.entity_id, revisions, wrappers)
            entity.state, entity.meta = state, meta

    async def _apply(
        self, event: any_pb2.Any, state: any_pb2.Any, meta: common_pb2.MetaData
    ) -> any_pb2.Any:
        reply: writeside_pb2.HandleEventResponse = await self._call(
            self._handler.HandleEvent(
                writeside_pb2.HandleEventRequest(event=event, prior_state=state, event_meta=meta)
            )
        )
        if not reply.HasField("resulting_state"):
            raise _HandlerError(grpc.StatusCode.INTERNAL, "HandleEvent returned no state")
        return reply.resulting_state

    @staticmethod
    async def _call(call: Awaitable[_Reply]) -> _Reply:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            trailers = tuple(exc.trailing_metadata() or ())
            raise _HandlerError(exc.code(), exc.details() or "", trailers) from exc


def _next_meta(prior: common_pb2.MetaData) -> common_pb2.MetaData:
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    return common_pb2.MetaData(
        entity_id=prior.entity_id, revision_number=prior.revision_number + 1, revision_date=now
    )


async def _create_table(pool: asyncpg.Pool, schema: str) -> None:
    # Fresh on every start, so one run's rows never meet another's.
    async with pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(
            f"CREATE TABLE {schema}.events (entity_id text NOT NULL, revision bigint NOT NULL,"
            " event bytea NOT NULL, PRIMARY KEY (entity_id, revision))"
        )


async def serve(settings: FloorSettings) -> None:
    """Serves until SIGTERM or SIGINT, then stops the server and closes the pool."""
    pool = await asyncpg.create_pool(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password,
        database=settings.db_name,
        min_size=settings.pool_size,
        max_size=settings.pool_size,
    )
    await _create_table(pool, settings.schema)
    channel = grpc.aio.insecure_channel(settings.write_side)
    server = grpc.aio.server()
    handler = writeside_pb2_grpc.WriteSideHandlerServiceStub(channel)
    servicer = FloorServicer(handler, pool, settings.schema)
    service_pb2_grpc.add_ChiefOfStateServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"{settings.host}:{settings.port}")
    await server.start()
    print(f"floor listening on {settings.host}:{settings.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(grace=2)
        await channel.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pool.close(), timeout=5)


def _parse_args() -> FloorSettings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, required=True, help="gRPC port to listen on")
    parser.add_argument("--write-side", required=True, help="write handler as host:port")
    parser.add_argument("--db-host", default="127.0.0.1", help="PostgreSQL host")
    parser.add_argument("--db-port", type=int, default=5432, help="PostgreSQL port")
    parser.add_argument("--db-user", default="postgres", help="PostgreSQL user")
    parser.add_argument("--db-password", default=None, help="PostgreSQL password")
    parser.add_argument("--db-name", default="postgres", help="PostgreSQL database")
    parser.add_argument("--schema", default="bench_floor", help="schema, dropped and recreated")
    parser.add_argument("--pool-size", type=int, default=16, help="database connections")
    args = parser.parse_args()
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", args.schema):
        parser.error("--schema must be a lower-case SQL identifier")
    return FloorSettings(
        host=args.host,
        port=args.port,
        write_side=args.write_side,
        db_host=args.db_host,
        db_port=args.db_port,
        db_user=args.db_user,
        db_password=args.db_password,
        db_name=args.db_name,
        schema=args.schema,
        pool_size=args.pool_size,
    )


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(_parse_args()))
    else:  # the same event loop as the runtime's node
        uvloop.run(serve(_parse_args()))
