"""The HTTP/JSON API (``COS_HTTP_PORT``): Chief of State's HTTP routes, served by
uvicorn beside the gRPC server of each node.

    app.py          the Starlette routes over the node's chain of interceptors
    convert.py      JSON forms of Any (base64, or protobuf JSON for known types)
    descriptors.py  the known types: COS_PROTO_DESCRIPTORS loaded into a pool
    status.py       failures as google.rpc.Status JSON with the mapped HTTP status
    openapi.py      the OpenAPI 3 document (/openapi.json)
    server.py       uvicorn in the node's event loop
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cos.exports import lazy_exports

if TYPE_CHECKING:
    from cos.http._app import build_app
    from cos.http._convert import AnyCodec, codec_for
    from cos.http._descriptors import read_sets
    from cos.http._server import HttpServer
    from cos.http._settings import HttpSettings

__all__ = [
    "AnyCodec",
    "HttpServer",
    "HttpSettings",
    "build_app",
    "codec_for",
    "read_sets",
]

__getattr__ = lazy_exports(__name__)
