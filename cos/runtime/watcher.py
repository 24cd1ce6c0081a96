"""What ``cos serve`` becomes once its node serves: a small process that keeps the node's
lifeline, without Ray.

The driver's work after start-up is to wait for SIGTERM, hand the node's shards over and
notice a node that stopped answering. None of that needs Ray in this process, and Ray,
the settings and the migrations make a driver of about 100 MB. So once the node is
ready, ``cos serve`` replaces itself (``exec``, the same process: its pid, its stderr,
its children, Ray's own processes when it started them, all stay) with this module, which
imports nothing heavy:

    cos serve ──exec──> python -m cos.runtime.watcher <socket>
        │                   │  every 5 s: "ping" ─> the node answers "alive" (30 s at most)
        │                   │  SIGTERM/SIGINT:  "leave" ─> the node hands its shards over,
        │                   │                   stops, answers "left" ─> exit 0
        │                   └─ the node gone or silent ─> exec again with --failed: exit 1
        └─ Unix socket, served by the node actor (``cos.runtime._node.Node``)

The node says the lines cos serve said before (``cos.serve``: shutting down, stopped),
so the log reads as it did. ``--failed REASON`` logs why the node is lost, in the
configured style, and exits 1, so a supervisor starts the node again.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import time

PING_EVERY = 5.0
ANSWER_WITHIN = 30.0
_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class Lifeline:
    """The connection to the node, and the signals that end the watch."""

    def __init__(self, control: str) -> None:
        self.node = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.node.connect(control)
        self._lines = self.node.makefile("rb")
        # A signal writes a byte here (Python's wakeup fd): select sees it at once.
        self._signalled, wakeup = socket.socketpair()
        wakeup.setblocking(False)
        signal.set_wakeup_fd(wakeup.fileno())
        self._wakeup = wakeup  # kept open for the process's life
        for sig in _SIGNALS:
            signal.signal(sig, lambda *_: None)

    def watch(self) -> str | None:
        """Ping the node until a signal (then None once the node left) or until the node
        is lost (then why)."""
        while True:
            ready, _, _ = select.select([self.node, self._signalled], [], [], PING_EVERY)
            if self._signalled in ready:
                if self.ask(b"leave", b"left", timeout=None):
                    return None
                return "the shard host did not finish leaving"
            if self.node in ready:  # between pings: the end of the stream, the node ended
                return "the shard host ended"
            if not self.ask(b"ping", b"alive", timeout=ANSWER_WITHIN):
                return f"the shard host stopped answering (nothing for {ANSWER_WITHIN:.0f} s)"

    def ask(self, question: bytes, answer: bytes, timeout: float | None) -> bool:
        """Whether the node answers ``question`` with ``answer`` within ``timeout`` s."""
        self.node.settimeout(timeout)
        try:
            self.node.sendall(question + b"\n")
            return self._lines.readline().strip() == answer
        except OSError:  # the timeout too
            return False


def stop_children(grace: float = 10.0) -> None:
    """Stop the processes cos serve started (the GCS and raylet of a Ray of its own): the
    raylet first, which stops its agents and workers, then the rest, each with SIGTERM
    and ``grace`` s to end. Whatever is left dies with this process (Ray's fate sharing).
    Killed instead, the raylet would leave its agents running."""
    children = _children()
    for pid, _ in sorted(children, key=lambda child: child[1] != "raylet"):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.02)


def _children() -> list[tuple[int, str]]:
    """This process's children: pid and name."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                head, tail = stat.read().rsplit(b")", 1)
        except OSError:
            continue  # ended meanwhile
        if int(tail.split()[1]) == me:  # the parent, the field after the state
            found.append((int(entry), head.split(b"(", 1)[1].decode(errors="replace")))
    return found


def _failed(reason: str) -> int:
    """Say why the node is lost, in the configured style; exit 1."""
    import logging

    from cos.logs import configure_logging
    from cos.settings import load_log_settings

    configure_logging(load_log_settings())
    log = logging.getLogger("cos.serve")
    log.error("%s", reason)
    stop_children()
    log.info("cos serve stopped (a shard host failed)")
    return 1


def main(argv: list[str]) -> int:
    # What the driver had open and did not mark close-on-exec (Ray's log files).
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    if argv[:1] == ["--failed"]:
        return _failed(" ".join(argv[1:]))
    (control,) = argv
    try:
        lifeline = Lifeline(control)
    except OSError as exc:
        lost: str | None = f"cannot reach the shard host at {control}: {exc.strerror}"
    else:
        # cos serve blocked them before it became this program: one that came meanwhile
        # is delivered now, to the lifeline.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        lost = lifeline.watch()
    finally:
        remove_control(control)
    if lost is None:
        stop_children()
        return 0
    os.execv(sys.executable, [sys.executable, "-m", "cos.runtime.watcher", "--failed", lost])


def remove_control(control: str) -> None:
    """The socket and its folder (made for it by cos serve)."""
    for remove, path in ((os.unlink, control), (os.rmdir, os.path.dirname(control))):
        with contextlib.suppress(OSError):
            remove(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
