"""The operator API, closed to callers without credentials.

``ReadSideManagerService`` and our ``cos.v1`` services (the shard table, read-side
status) change or reveal the runtime's state, so a caller must present the operator
token (``authorization: Bearer <COS_ADMIN_TOKEN>``) or, over mutual TLS, a client
certificate whose name is in ``COS_ADMIN_CLIENT_NAMES``. The client API
(``ChiefOfStateService``) stays open. ``COS_ADMIN_API_OPEN=true`` opens the operator API
for deployments that protect it some other way.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Collection
from pathlib import Path

import grpc
from pydantic import Field, SecretStr

from cos.config import NameList, Part
from cos.service._interceptors import Behaviour, MethodInterceptor, unary_unary

log = logging.getLogger(__name__)

# Where a single local `cos serve` keeps the operator token it made, and where cos-cli
# looks for one (relative to the working folder).
LOCAL_TOKEN_FILE = Path(".cos-data/admin-token")

OPERATOR_SERVICES = (
    "/chief_of_state.v1.ReadSideManagerService/",
    "/cos.v1.ClusterService/",
    "/cos.v1.ReadSideStatusService/",
)
_BEARER = "bearer "


class OperatorSettings(Part):
    """Who may call the operator API (``COS_ADMIN_*``)."""

    env_prefix = "COS_ADMIN_"

    token: SecretStr | None = Field(
        None, description="the operator token the operator API (read sides, shards) asks for"
    )
    token_file: str | None = Field(
        None, description="file holding the operator token (instead of COS_ADMIN_TOKEN)"
    )
    client_names: NameList = Field(
        (), description="client certificate names let into the operator API (mutual TLS)"
    )
    api_open: bool = Field(
        False, description="open the operator API to callers without credentials"
    )

    @property
    def configured(self) -> bool:
        """Whether any way in is configured (a token, certificate names, or open)."""
        return bool(self.token or self.client_names or self.api_open)

    def refusal(
        self, metadata: dict[str, str], peer_names: Collection[str]
    ) -> grpc.StatusCode | None:
        """None when the caller may go on, else the status to refuse it with."""
        if self.api_open or (self.client_names and set(peer_names) & set(self.client_names)):
            return None
        presented = metadata.get("authorization", "")
        bearer = presented[: len(_BEARER)].lower() == _BEARER
        # compare_digest: the time taken says nothing of how much of the token matched.
        given = presented[len(_BEARER) :].encode()
        token = self.token.get_secret_value().encode() if self.token else b""
        if token and bearer and hmac.compare_digest(given, token):
            return None
        if not self.token and not self.client_names:
            return grpc.StatusCode.PERMISSION_DENIED
        return grpc.StatusCode.UNAUTHENTICATED


class OperatorGate(MethodInterceptor):
    """Refuses operator calls without credentials: UNAUTHENTICATED without a valid token
    (or allowed certificate), PERMISSION_DENIED when no credential is configured at all."""

    def __init__(self, access: OperatorSettings) -> None:
        super().__init__()
        self._access = access

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None or not method.startswith(OPERATOR_SERVICES):
            return handler
        return unary_unary(handler, self._guarded(method, handler.unary_unary))

    def _guarded(self, method: str, behaviour: Behaviour) -> Behaviour:
        access = self._access

        async def unary_unary(request: object, context: grpc.aio.ServicerContext) -> object:
            metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            refused = access.refusal(metadata, _peer_names(context))
            if refused is grpc.StatusCode.PERMISSION_DENIED:
                await context.abort(
                    refused,
                    "the operator API is closed: no operator credential is configured (set"
                    " COS_ADMIN_TOKEN, or COS_ADMIN_CLIENT_NAMES with mutual TLS)",
                )
            if refused is not None:
                log.warning("%s: refused a caller without the operator token", method)
                await context.abort(
                    refused,
                    "the operator API needs the operator token (authorization: Bearer …;"
                    " cos-cli --admin-token or COS_ADMIN_TOKEN) or an allowed client certificate",
                )
            return await behaviour(request, context)

        return unary_unary


def _peer_names(context: grpc.aio.ServicerContext) -> list[str]:
    """The names in the caller's client certificate (empty without mutual TLS)."""
    auth = context.auth_context() or {}
    names = [*auth.get("x509_common_name", ()), *auth.get("x509_subject_alternative_name", ())]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
