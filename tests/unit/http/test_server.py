"""The HTTP server's binding: a taken port or an address it cannot use is named."""

from __future__ import annotations

import socket

import pytest
from starlette.applications import Starlette

from cos.errors import PortInUseError, StartupError
from cos.http import HttpServer


def test_a_taken_port_names_cos_http_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HttpServer(Starlette(), address="127.0.0.1", port=port, grace=1)
        with pytest.raises(PortInUseError, match=f"^COS_HTTP_PORT: 127.0.0.1:{port} is already"):
            server.bind()


def test_an_address_not_of_this_machine_names_cos_http_address() -> None:
    server = HttpServer(Starlette(), address="192.0.2.1", port=9001, grace=1)  # TEST-NET-1
    with pytest.raises(StartupError, match="^COS_HTTP_ADDRESS: cannot serve HTTP on 192.0.2.1"):
        server.bind()
