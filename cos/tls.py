"""TLS on the runtime's gRPC port and on the calls between nodes, from PEM files.

- The server presents ``COS_TLS_CERT_FILE``/``COS_TLS_KEY_FILE``; with
  ``COS_TLS_CLIENT_CA_FILE`` it asks every caller for a certificate that CA signed
  (mutual TLS). The files are read again when they change: gRPC asks for the
  certificate before each new connection's handshake, so a rotated certificate is used
  from the next connection on, without a restart.
- A node calling a peer (forwarding) trusts ``COS_TLS_CA_FILE`` (else the client CA,
  else the system roots), presents its own certificate as client certificate, and may
  check the peer against ``COS_TLS_SERVER_NAME`` instead of the address it dials
  (nodes are dialled by IP). Changed files are picked up by the next channel it opens.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from pydantic import Field, model_validator

from cos.config import Part, env_name

log = logging.getLogger(__name__)

PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


class TlsFileError(ValueError):
    """A certificate or key file cannot be read or is not PEM."""


@dataclass(frozen=True)
class TlsFiles:
    """Where the node's certificate, key and CAs are (paths, never contents: this object
    travels to every Ray worker)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    ca_file: str | None = None
    server_name: str | None = None

    @property
    def mutual(self) -> bool:
        """Callers must present a client certificate."""
        return self.client_ca_file is not None

    @property
    def trust_file(self) -> str | None:
        """The CA bundle a node trusts its peers with."""
        return self.ca_file or self.client_ca_file

    def version(self) -> tuple[tuple[int, int], ...]:
        """Changes whenever one of the files does (modification time and size)."""
        stamps = []
        for path in (self.cert_file, self.key_file, self.client_ca_file, self.trust_file):
            try:
                stat = os.stat(path) if path else None
            except OSError:
                stat = None
            stamps.append((stat.st_mtime_ns, stat.st_size) if stat else (0, 0))
        return tuple(stamps)


def read_pem(path: str, what: str, marker: bytes = b"-----BEGIN ") -> bytes:
    """The bytes of a PEM file; :class:`TlsFileError` naming ``what`` when it is not."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsFileError(f"cannot read the {what} {path!r}: {exc.strerror or exc}") from None
    if marker not in data:
        raise TlsFileError(f"the {what} {path!r} is not PEM (no {marker.decode()}…)")
    return data


class TlsSettings(Part):
    """TLS on the gRPC port and between nodes (``COS_TLS_*``): off unless a certificate is set."""

    env_prefix = "COS_TLS_"

    cert_file: str | None = Field(
        None, description="PEM certificate chain of the gRPC port (turns TLS on)"
    )
    key_file: str | None = Field(None, description="PEM private key of COS_TLS_CERT_FILE")
    client_ca_file: str | None = Field(
        None, description="PEM CAs whose client certificates callers must present (mutual TLS)"
    )
    ca_file: str | None = Field(
        None, description="PEM CAs a node trusts its peers with (default: the client CA)"
    )
    server_name: str | None = Field(
        None, description="name peers' certificates are checked against (default: their address)"
    )

    @property
    def files(self) -> TlsFiles | None:
        """The files, when TLS is on."""
        if self.cert_file is None or self.key_file is None:
            return None
        return TlsFiles(
            self.cert_file, self.key_file, self.client_ca_file, self.ca_file, self.server_name
        )

    @model_validator(mode="after")
    def _usable(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("COS_TLS_CERT_FILE and COS_TLS_KEY_FILE: set both or neither")
        if self.cert_file is None:
            for name in ("client_ca_file", "ca_file", "server_name"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{env_name(TlsSettings, name)}: needs COS_TLS_CERT_FILE")
            return self
        markers = {
            "cert_file": PEM_CERTIFICATE,
            "key_file": b"-----BEGIN ",
            "client_ca_file": PEM_CERTIFICATE,
            "ca_file": PEM_CERTIFICATE,
        }
        for name, marker in markers.items():
            path = getattr(self, name)
            if path is not None:
                try:
                    read_pem(path, "file", marker)
                except TlsFileError as exc:
                    raise ValueError(f"{env_name(TlsSettings, name)}: {exc}") from None
        return self


def _server_config(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
    key = read_pem(files.key_file, "TLS key file")
    cert = read_pem(files.cert_file, "TLS certificate file", PEM_CERTIFICATE)
    ca = (
        read_pem(files.client_ca_file, "TLS client CA file", PEM_CERTIFICATE)
        if files.client_ca_file
        else None
    )
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


class _Reloader:
    """gRPC's certificate fetcher: a new configuration when the files changed, else None
    (keep the current one). A half-written file keeps the old certificate, with a log
    line, until it reads whole."""

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._version = files.version()

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        version = self._files.version()
        if version == self._version:
            return None
        try:
            config = _server_config(self._files)
        except TlsFileError as exc:
            log.warning("TLS files changed but cannot be used yet (%s): keeping the old ones", exc)
            return None
        self._version = version
        log.info("TLS certificate files changed: new connections use them")
        return config


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Credentials for the gRPC port that follow the files as they change."""
    return grpc.dynamic_ssl_server_credentials(
        _server_config(files), _Reloader(files), require_client_authentication=files.mutual
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Credentials for calls to a peer node: trust the CA, present this node's certificate."""
    trust = files.trust_file
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(trust, "TLS CA file", PEM_CERTIFICATE) if trust else None,
        private_key=read_pem(files.key_file, "TLS key file"),
        certificate_chain=read_pem(files.cert_file, "TLS certificate file", PEM_CERTIFICATE),
    )


def bind_server(server: grpc.aio.Server, address: str, tls: TlsFiles | None) -> bool:
    """Bind ``address`` (with TLS when ``tls`` is set); False when the port is taken."""
    try:
        if tls is None:
            bound: int = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, server_credentials(tls))
    except RuntimeError:  # grpcio >= 1.60 raises where older ones returned 0
        return False
    return bound != 0
