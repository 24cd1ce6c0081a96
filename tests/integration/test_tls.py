"""TLS and mutual TLS on the gRPC port, between nodes and for cos-cli (certificates the
test makes; a real runtime on Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from chief_of_state.v1 import service_pb2_grpc
from cos.sharding import PeerClients, Route
from cos.tls import TlsFiles
from cos.v1 import cluster_pb2, cluster_pb2_grpc
from cos.writeside import CommandRequest
from tests.support.commands import command, request, state_of
from tests.support.processes import ROOT
from tests.support.runtimes import StartRuntime
from tests.support.tls import Authority


def channel(
    port: int,
    ca: Path | None,
    client: tuple[Path, Path] | None = None,
    server_name: str | None = None,
) -> grpc.aio.Channel:
    key, cert = (client[1].read_bytes(), client[0].read_bytes()) if client else (None, None)
    credentials = grpc.ssl_channel_credentials(ca.read_bytes() if ca else None, key, cert)
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options)


async def process(port: int, ca: Path | None, entity_id: str, **tls: object) -> int:
    """One ProcessCommand over TLS; the revision it made."""
    async with channel(port, ca, **tls) as opened:  # type: ignore[arg-type]
        stub = service_pb2_grpc.ChiefOfStateServiceStub(opened)
        reply = await stub.ProcessCommand(request(entity_id, add=[1]), timeout=10)
    return int(reply.meta.revision_number)


async def refused(port: int, ca: Path | None, **tls: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await process(port, ca, "refused", **tls)
    return raised.value.code()


async def test_the_port_serves_tls_and_refuses_plaintext(
    start_cos: StartRuntime, tmp_path: Path
) -> None:
    ca = Authority("cos-test-ca")
    cert, key = ca.issue(tmp_path, "node")
    cos = await start_cos(tls_cert_file=str(cert), tls_key_file=str(key))
    port = cos.settings.server.port
    assert await process(port, ca.write(tmp_path / "ca.pem"), "tls-1") == 1
    # A plaintext client gets no answer from a TLS port.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plain:
        stub = service_pb2_grpc.ChiefOfStateServiceStub(plain)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ProcessCommand(request("tls-1", add=[1]), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_rotated_certificate_is_used_from_the_next_connection(
    start_cos: StartRuntime, tmp_path: Path
) -> None:
    old, new = Authority("old-ca"), Authority("new-ca")
    old_ca, new_ca = old.write(tmp_path / "old-ca.pem"), new.write(tmp_path / "new-ca.pem")
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    cert, key = old.issue(tmp_path / "old", "node")
    cos = await start_cos(tls_cert_file=str(cert), tls_key_file=str(key))
    port = cos.settings.server.port
    assert await process(port, old_ca, "rotate") == 1
    assert await refused(port, new_ca) == grpc.StatusCode.UNAVAILABLE
    # Rotate as an operator (or cert-manager) would: new files renamed over the old.
    new_cert, new_key = new.issue(tmp_path / "new", "node")
    os.replace(new_key, key)
    os.replace(new_cert, cert)
    assert await process(port, new_ca, "rotate") == 2
    assert await refused(port, old_ca) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_lets_in_only_certificates_of_the_client_ca(
    start_cos: StartRuntime, tmp_path: Path
) -> None:
    ca, stranger = Authority("cos-ca"), Authority("stranger-ca")
    ca_file = ca.write(tmp_path / "ca.pem")
    cert, key = ca.issue(tmp_path, "node")
    (tmp_path / "stranger").mkdir()
    cos = await start_cos(
        tls_cert_file=str(cert), tls_key_file=str(key), tls_client_ca_file=str(ca_file)
    )
    port = cos.settings.server.port
    assert await process(port, ca_file, "mtls", client=ca.issue(tmp_path, "app")) == 1
    assert await refused(port, ca_file) == grpc.StatusCode.UNAVAILABLE  # no certificate
    foreign = stranger.issue(tmp_path / "stranger", "app")
    assert await refused(port, ca_file, client=foreign) == grpc.StatusCode.UNAVAILABLE


async def test_an_allowed_client_certificate_opens_the_operator_api(
    start_cos: StartRuntime, tmp_path: Path
) -> None:
    ca = Authority("cos-ca")
    ca_file = ca.write(tmp_path / "ca.pem")
    cert, key = ca.issue(tmp_path, "node")
    cos = await start_cos(
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        tls_client_ca_file=str(ca_file),
        admin_token=None,
        admin_client_names=("ops",),
    )

    async def shards(client: tuple[Path, Path]) -> int:
        async with channel(cos.settings.server.port, ca_file, client) as opened:
            stub = cluster_pb2_grpc.ClusterServiceStub(opened)
            reply = await stub.GetShards(cluster_pb2.GetShardsRequest(), timeout=10)
        return len(reply.shards)

    assert await shards(ca.issue(tmp_path, "ops")) == cos.settings.cluster.num_shards
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await shards(ca.issue(tmp_path, "app"))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # cos-cli presents the operator's certificate from its flags.
    ops_cert, ops_key = tmp_path / "ops.pem", tmp_path / "ops.key"
    shown = subprocess.run(
        [
            *(sys.executable, "-m", "cli.admin", "--cos-host", "127.0.0.1"),
            *("--cos-port", str(cos.settings.server.port), "--tls-ca-file", str(ca_file)),
            *("--tls-cert-file", str(ops_cert), "--tls-key-file", str(ops_key)),
            *("cluster", "shards"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )
    assert shown.returncode == 0, shown.stderr
    assert next(iter(cos.runtime.hosts))[:16] in shown.stdout, shown.stdout


async def test_nodes_forward_over_mutual_tls_checking_the_configured_name(
    start_cos: StartRuntime, tmp_path: Path
) -> None:
    ca = Authority("cos-ca")
    ca_file = ca.write(tmp_path / "ca.pem")
    # Nodes are dialled by IP; their certificates carry a service name instead.
    cert, key = ca.issue(tmp_path, "node", names=("cos-nodes.internal",))
    cos = await start_cos(
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        tls_client_ca_file=str(ca_file),
        tls_server_name="cos-nodes.internal",
    )
    files = cos.settings.tls.files
    assert files is not None
    address = Route("peer-host", f"127.0.0.1:{cos.settings.server.port}")
    peers = PeerClients(tls=files)
    try:
        forwarded = await peers.forward_command(
            address, CommandRequest("peer-1", command(add=[5]), ()), timeout=10
        )
        assert forwarded.meta.revision_number == 1 and state_of(forwarded)["total"] == 5
    finally:
        await peers.close()
    # Without the name the peer's certificate does not match its address.
    wrong = PeerClients(tls=TlsFiles(str(cert), str(key), str(ca_file)))
    try:
        with pytest.raises(Exception, match="unreachable|UNAVAILABLE|handshake"):
            await wrong.forward_command(
                address, CommandRequest("peer-1", command(add=[5]), ()), timeout=10
            )
    finally:
        await wrong.close()
