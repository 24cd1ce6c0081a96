"""Ray, started or joined in one place, with what it reads from the environment set first.

:func:`prepare_ray` runs before the first ``import ray`` of ``cos serve``:

- Log lines: the driver prints what the actors log as it is (:mod:`cos.logs`).
- Listening sockets: a ``cos serve`` that starts its own Ray is a single node, so every
  Ray process (GCS, raylet, workers) listens on the loopback address only. Ray turns a
  node IP of ``127.0.0.1`` into the machine's interface address, and binds every
  interface, unless it is told it runs on one machine (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``).
- Token authentication: on, always for a Ray that ``cos serve`` starts (Ray keeps the
  token in ``~/.ray/auth_token``), and with ``COS_RAY_AUTH_TOKEN_FILE`` or
  ``COS_RAY_AUTH_TOKEN`` when joining a cluster (``ray start`` turns it on by default).
  The file form puts only a path in the environment of every Ray process.
- Head loss: Ray's processes exit when Ray's head (its GCS) has been unreachable for
  ``COS_RAY_GCS_RECONNECT_TIMEOUT_SECONDS``; the driver, ``cos serve``, is told here (the
  raylet and workers of a ``ray start`` node read it from the head's system config or their
  own ``RAY_gcs_rpc_server_reconnect_timeout_s``).

A variable the operator set already is left alone. :func:`connect_ray` is the one
``ray.init`` of the runtime's commands.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from cos.logs import prepare_ray_log_forwarding
from cos.settings import RaySettings
from cos.sharding import NAMESPACE


def prepare_ray(settings: RaySettings, *, local: bool) -> None:
    """Set Ray's environment for a driver that starts its own Ray (``local``) or joins
    a cluster. Call it before the first ``import ray``."""
    prepare_ray_log_forwarding()
    os.environ.setdefault(
        "RAY_gcs_rpc_server_reconnect_timeout_s", str(settings.gcs_reconnect_timeout_seconds)
    )
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if settings.auth_token_file is not None:
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        os.environ.setdefault("RAY_AUTH_TOKEN_PATH", settings.auth_token_file)
    elif settings.auth_token is not None:
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        os.environ.setdefault("RAY_AUTH_TOKEN", settings.auth_token.get_secret_value())
    elif local:
        # Ray would turn it on as well, with a warning; asked for, it says nothing.
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def connect_ray(
    address: str | None,
    *,
    temp_dir: str | None = None,
    system_config: Mapping[str, int] | None = None,
    quiet: bool = False,
) -> None:
    """Join the Ray cluster at ``address`` (``auto``: this machine's; ``temp_dir`` picks
    the node when several share the machine), or with None start a one-node Ray of our
    own on the loopback address, with ``system_config``. ``quiet``: Ray's warnings too
    are left out."""
    import ray

    ray.init(
        address=address or "local",
        _node_ip_address=None if address else "127.0.0.1",
        _system_config=None if address else dict(system_config or {}),
        _temp_dir=temp_dir if address else None,
        namespace=NAMESPACE,
        include_dashboard=False,
        logging_level=logging.ERROR if quiet else logging.WARNING,
        configure_logging=False,
    )


def disconnect_ray() -> None:
    """Leave Ray (a Ray of our own stops), when connected."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
