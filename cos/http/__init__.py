"""The HTTP/JSON API (``COS_HTTP_PORT``): Chief of State's HTTP routes, served by
uvicorn beside the gRPC server of each node.

    app.py          the Starlette routes over the node's chain of interceptors
    convert.py      JSON forms of Any (base64, or protobuf JSON for known types)
    descriptors.py  the known types: COS_PROTO_DESCRIPTORS loaded into a pool
    status.py       failures as google.rpc.Status JSON with the mapped HTTP status
    openapi.py      the OpenAPI 3 document (/openapi.json)
    server.py       uvicorn in the node's event loop
"""

from cos.http.app import build_app
from cos.http.convert import AnyCodec, codec_for
from cos.http.server import HttpServer

__all__ = ["AnyCodec", "HttpServer", "build_app", "codec_for"]
