"""cos: a Chief-of-State-compatible event-sourcing runtime on Ray and PostgreSQL."""

import os

# gRPC's fork support restarts gRPC's threads in a forked child. Our processes fork
# only to exec (Ray starts its GCS and raylets with a ``preexec_fn``, so with fork, not
# vfork), and a gRPC thread restarted in that window can crash: Ray's crash handler then
# arms a 3 s alarm that survives the exec, and the new raylet dies of SIGALRM three
# seconds after it started. Read when gRPC is initialised, so set here, before any
# module of ours imports grpc. An operator's own setting is left alone.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
