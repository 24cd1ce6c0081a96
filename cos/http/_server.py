"""The HTTP/JSON API's server: uvicorn, serving in the node actor's event loop beside
the gRPC server, on a socket bound beforehand so a taken port stops start-up cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp

from cos.errors import PortInUseError, StartupError

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: the actor owns the process's signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """Serves ``app`` on ``address:port`` until stopped."""

    def __init__(self, app: ASGIApp, *, address: str, port: int, grace: float) -> None:
        self._address, self._port = address, port
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,  # the node's logging stays as configured
            access_log=False,
            proxy_headers=False,
            server_header=False,
            ws="none",
            timeout_graceful_shutdown=max(round(grace), 1),
        )
        self._server = _Server(config)
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        """``address:port``, where it serves."""
        return f"{self._address}:{self._port}"

    def bind(self) -> None:
        """Bind the port; raises :class:`PortInUseError` naming COS_HTTP_PORT if taken, a
        :class:`StartupError` naming the settings if the address cannot be bound."""
        family = socket.AF_INET6 if ":" in self._address else socket.AF_INET
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say they are
        # TCP; without it every answer waits out the client's delayed ACK (~40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._address, self._port))
            sock.listen(socket.SOMAXCONN)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError.at(
                    self._address, self._port, setting="COS_HTTP_PORT", of="COS_HTTP_ADDRESS"
                ) from None
            raise StartupError(
                f"COS_HTTP_ADDRESS: cannot serve HTTP on {self._address}:{self._port}"
                f" (COS_HTTP_ADDRESS, COS_HTTP_PORT): {exc.strerror}"
            ) from None
        sock.setblocking(False)
        self._socket = sock

    def start(self) -> None:
        """Serve on the bound socket (connections made meanwhile wait in its backlog)."""
        if self._socket is None:
            raise RuntimeError("HttpServer.start before bind")
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (within the grace time)."""
        task, self._task = self._task, None
        if task is not None:
            self._server.should_exit = True
            try:
                await task
            except Exception:
                log.exception("the HTTP server failed")
        if self._socket is not None:
            self._socket.close()
            self._socket = None
