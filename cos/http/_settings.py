"""The HTTP/JSON API's settings (``COS_HTTP_*``, and Chief of State's ``COS_SERVER_PROTOCOL``)."""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import BeforeValidator, Field

from cos.config import Part, lower_case
from cos.http._descriptors import DescriptorSet


class ServerProtocol(str, enum.Enum):
    """``COS_SERVER_PROTOCOL``, as Chief of State's main branch names it."""

    GRPC = "grpc"
    HTTP = "http"
    BOTH = "both"


class HttpSettings(Part):
    """Whether and where a node serves the HTTP/JSON API, and the types it shows as JSON."""

    env_prefix = "COS_HTTP_"

    server_protocol: Annotated[ServerProtocol, BeforeValidator(lower_case)] = Field(
        ServerProtocol.GRPC,
        alias="COS_SERVER_PROTOCOL",
        description="grpc, http or both: the APIs served (gRPC always)",
    )
    enabled: bool = Field(
        False, description="serve the HTTP/JSON API (as COS_SERVER_PROTOCOL=both does)"
    )
    address: str | None = Field(
        None, description="address the HTTP/JSON API binds (default: COS_ADDRESS)"
    )
    port: int = Field(9001, gt=0, lt=65536, description="port of the HTTP/JSON API")
    proto_descriptors: str | None = Field(
        None,
        alias="COS_PROTO_DESCRIPTORS",
        description="descriptor set file(s) (protoc --descriptor_set_out), comma separated:"
        " the HTTP API's JSON for those types",
    )
    # The files of COS_PROTO_DESCRIPTORS, read once by cos.settings when the API is served.
    descriptor_sets: tuple[DescriptorSet, ...] = Field((), exclude=True)

    @property
    def served(self) -> bool:
        """Whether this node serves the HTTP/JSON API."""
        return self.enabled or self.server_protocol is not ServerProtocol.GRPC
