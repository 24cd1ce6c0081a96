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

**A lean head.** The Ray that ``cos serve`` starts runs only what the runtime uses: GCS,
raylet and the raylet's two agents. Ray's API server (the dashboard's head, which
``include_dashboard=False`` slims but still starts, for usage statistics), its autoscaler
monitor and its log monitor are left out; ``ray.init`` has no switch for them, so
:func:`connect_ray` gives it a ``Node`` of its own making (:class:`ray._private.node.Node`,
with the ``no_monitor`` and ``include_log_monitor`` of ``ray start --no-monitor
--include-log-monitor=false``, and no API server). The log monitor stays when the actors
cannot write to the driver's stderr (``cos.logs.share_stderr``: a socket, as systemd
gives). The raylet's agents stay: the raylet waits for the dashboard agent's port files
before it registers and fate-shares with the runtime-env agent. The dashboard agent runs
minimal (as with ``pip install ray``), so the driver does not import the dashboard's HTTP
stack to decide.
``tests/integration/test_ray_processes.py`` names what must not run.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from cos.logs import append_stderr, can_share_stderr, prepare_ray_log_forwarding
from cos.settings import RaySettings
from cos.sharding import NAMESPACE

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


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

    # The actors write to this process's stderr when they can, Ray's log monitor need not.
    append_stderr()
    log_monitor = not can_share_stderr(os.getpid())
    with contextlib.nullcontext() if address else _lean_head(log_monitor):
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


@contextlib.contextmanager
def _lean_head(log_monitor: bool) -> Iterator[None]:
    """While it is open, ``ray.init(address="local")`` starts a head without Ray's API
    server and autoscaler monitor, and without its log monitor unless ``log_monitor``
    (see the module's docstring)."""
    from ray._private import node, utils

    ray_node: Any = node.Node  # untyped in Ray
    dashboard_check = utils.get_dashboard_dependency_error

    class LeanHead(ray_node):  # type: ignore[misc]
        def __init__(self, ray_params: Any, *args: Any, **kwargs: Any) -> None:
            ray_params.no_monitor = True  # the autoscaler: the runtime scales nothing
            ray_params.include_log_monitor = log_monitor
            super().__init__(ray_params, *args, **kwargs)

        def start_api_server(self, **_: Any) -> None:
            self._webui_url = None  # no dashboard, no usage statistics (ray.init turns them off)

    setattr(node, "Node", LeanHead)  # noqa: B010 (ray.init reads the module's name)
    # Ray imports its dashboard's HTTP stack (aiohttp, ~0.2 s) to choose between the full
    # and the minimal dashboard agent; the runtime uses neither's extras: minimal.
    setattr(utils, "get_dashboard_dependency_error", _no_dashboard)  # noqa: B010
    try:
        yield
    finally:
        setattr(node, "Node", ray_node)  # noqa: B010
        setattr(utils, "get_dashboard_dependency_error", dashboard_check)  # noqa: B010


def _no_dashboard() -> ImportError:
    return ImportError("the runtime starts Ray's dashboard agent minimal")


def die_with_raylet() -> None:
    """Have the kernel kill this actor's process the moment its parent, the raylet, ends
    (Linux's ``PR_SET_PDEATHSIG``). Left to Ray, a worker notices a lost raylet after
    one to two seconds; a node killed as a group is then gone at once: the raylet dies
    with ``cos serve`` (Ray's fate sharing), and the actors with the raylet."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))
    elif parent == 1:  # the raylet ended before the kernel was told
        os._exit(1)


def disconnect_ray() -> None:
    """Leave Ray (a Ray of our own stops), when connected."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
