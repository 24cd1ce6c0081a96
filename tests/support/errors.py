"""Reading the rich status of a failed gRPC call."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


def rich_status(error: grpc.RpcError) -> status_pb2.Status:
    """The call's grpc-status-details-bin trailer (``from_call`` also checks that its code
    and message are the call's)."""
    status = rpc_status.from_call(error)
    assert status is not None, "no grpc-status-details-bin trailer"
    return status


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo that leads the call's rich status."""
    info = error_details_pb2.ErrorInfo()
    assert rich_status(error).details[0].Unpack(info)
    return info
