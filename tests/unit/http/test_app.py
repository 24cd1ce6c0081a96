"""Request headers as call metadata (pure: a Starlette request built from its scope)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from cos.errors import InvalidRequestError
from cos.http._app import metadata_of


def _request(*headers: tuple[bytes, bytes]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": list(headers)})


def test_headers_become_lower_case_metadata_without_the_connection_ones() -> None:
    request = _request(
        (b"X-Request-Id", b"abc"),
        (b"Content-Length", b"12"),
        (b"Connection", b"keep-alive"),
        (b"x-cos-forwarded", b"1"),
        (b"x-trace-bin", b"AQI"),
        (b"x-request-id", b"again"),
    )
    assert metadata_of(request) == (
        ("x-request-id", "abc"),
        ("x-trace-bin", b"\x01\x02"),
        ("x-request-id", "again"),
    )


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ((b"x-trace-bin", b"***"), "header x-trace-bin is not base64"),
        ((b"x-name", "é".encode("latin-1")), "header x-name is not printable ASCII"),
        ((b"x-name", b"a\x01b"), "header x-name is not printable ASCII"),
    ],
)
def test_headers_metadata_cannot_carry_are_refused(header: tuple[bytes, bytes], words: str) -> None:
    with pytest.raises(InvalidRequestError, match=words):
        metadata_of(_request(header))
