"""TLS to PostgreSQL (COS_DB_SSL_*), against the test database behind a TLS front.

The machine's PostgreSQL (or the embedded one) runs without TLS, so the test puts a
front before it that answers PostgreSQL's SSLRequest as a TLS-enabled server does
("S", then the handshake, with a certificate the test made) and passes the decrypted
protocol on; or answers "N", as a server without TLS does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from cos.errors import DatabaseUnreachableError
from cos.postgres import DatabaseSettings, DatabaseTarget, wait_for_database
from tests.support.tls import Authority

SSL_REQUEST = 80877103


class TlsFront:
    """A listening front of ``upstream`` that speaks TLS with ``context`` (or refuses TLS
    when it is None). ``handshakes`` counts the TLS sessions it made."""

    def __init__(self, upstream: DatabaseTarget, context: ssl.SSLContext | None) -> None:
        self._upstream = upstream
        self._context = context
        self.handshakes = 0
        self.port = 0

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self._upstream.host, self._upstream.port
        if host.startswith("/"):  # the embedded server's socket folder
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await asyncio.open_connection(host, port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(8)
            _, code = struct.unpack("!ii", first)
            if code == SSL_REQUEST:
                first = b""
                if self._context is None:
                    writer.write(b"N")
                else:
                    writer.write(b"S")
                    await writer.drain()
                    await writer.start_tls(self._context)
                    self.handshakes += 1
            up_reader, up_writer = await self._open_upstream()
            up_writer.write(first)
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TlsFront]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


def server_context(authority: Authority, folder: Path, names: tuple[str, ...]) -> ssl.SSLContext:
    cert, key = authority.issue(folder, "postgres", names)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def through(front: TlsFront, database: DatabaseTarget, **ssl: str) -> DatabaseTarget:
    """``database`` reached through ``front``, with COS_DB_SSL_* as given."""
    settings = DatabaseSettings(host="127.0.0.1", **ssl)  # type: ignore[arg-type]
    return replace(database, host="127.0.0.1", port=front.port, tls=settings.tls_parameters())


async def test_verify_full_connects_over_tls_to_a_server_the_ca_signed(
    database: DatabaseTarget, tmp_path: Path
) -> None:
    ca = Authority("pg-ca")
    front = TlsFront(database, server_context(ca, tmp_path, ("localhost", "127.0.0.1")))
    async with front.running():
        target = through(
            front,
            database,
            ssl_mode="verify-full",
            ssl_root_cert=str(ca.write(tmp_path / "ca.pem")),
        )
        await wait_for_database(target, retry_seconds=5)
        conn = await asyncpg.connect(**target.connect_kwargs())
        try:
            assert await conn.fetchval("SELECT 41 + 1") == 42
        finally:
            await conn.close()
    assert front.handshakes == 2


async def test_verify_ca_accepts_a_certificate_for_another_name_verify_full_does_not(
    database: DatabaseTarget, tmp_path: Path
) -> None:
    ca = Authority("pg-ca")
    root = str(ca.write(tmp_path / "ca.pem"))
    front = TlsFront(database, server_context(ca, tmp_path, ("pg.example",)))
    async with front.running():
        await wait_for_database(
            through(front, database, ssl_mode="verify-ca", ssl_root_cert=root), 5
        )
        full = through(front, database, ssl_mode="verify-full", ssl_root_cert=root)
        with pytest.raises(DatabaseUnreachableError) as raised:
            await wait_for_database(full, retry_seconds=30)  # refused at once, not retried
    assert "TLS to PostgreSQL" in str(raised.value)
    assert "COS_DB_SSL_ROOT_CERT" in str(raised.value)


async def test_a_certificate_of_another_ca_or_a_server_without_tls_fail_at_once(
    database: DatabaseTarget, tmp_path: Path
) -> None:
    ca, other = Authority("pg-ca"), Authority("other-ca")
    front = TlsFront(database, server_context(ca, tmp_path, ("127.0.0.1",)))
    async with front.running():
        untrusted = through(
            front,
            database,
            ssl_mode="verify-full",
            ssl_root_cert=str(other.write(tmp_path / "other.pem")),
        )
        with pytest.raises(DatabaseUnreachableError, match="certificate verify failed"):
            await asyncio.wait_for(wait_for_database(untrusted, retry_seconds=30), 10)
    plain = TlsFront(database, None)
    async with plain.running():
        with pytest.raises(DatabaseUnreachableError, match="TLS to PostgreSQL"):
            await asyncio.wait_for(
                wait_for_database(through(plain, database, ssl_mode="require"), 30), 10
            )
        # prefer (the default) falls back to plaintext, as libpq does.
        await wait_for_database(through(plain, database, ssl_mode="prefer"), 5)
