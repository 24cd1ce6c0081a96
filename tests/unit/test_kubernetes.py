"""cos.kubernetes against kmock's Kubernetes API emulator over HTTP: the real client, list
then watch, label filtering, terminating and deleted pods, and deletions missed between
two watches. Docker mode never imports the ``kubernetes`` package."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import kmock
import pytest
from kubernetes import client

from cos.runtime._kubernetes import PodWatch
from cos.sharding import Pod

NAMESPACE = "cos"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


def pod(name: str, ip: str, app: str = "cos-test", phase: str = "Running") -> dict[str, Any]:
    running = {"running": {"startedAt": "2026-11-30T00:00:00Z"}} if phase == "Running" else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app}},
        "spec": {"containers": [{"name": "cos", "image": "cos-ray"}]},
        "status": {
            "phase": phase,
            "podIP": ip,
            "containerStatuses": [
                {
                    "name": "cos",
                    "ready": False,
                    "restartCount": 0,
                    "image": "cos-ray",
                    "imageID": "",
                    "state": running,
                }
            ],
        },
    }


def api_of(server: kmock.RawHandler) -> Callable[[], client.CoreV1Api]:
    def make() -> client.CoreV1Api:
        return client.CoreV1Api(client.ApiClient(client.Configuration(host=str(server.url))))

    return make


async def call(server: kmock.RawHandler, method: str, path: str, body: object = None) -> None:
    async with getattr(server, method)(path, json=body) as reply:
        assert reply.status < 300, await reply.text()


class Watching:
    """A PodWatch running in the background; what it reports lands in ``seen``."""

    def __init__(self, server: kmock.RawHandler) -> None:
        self.watch = PodWatch("cos-test", 3, 60.0, namespace=NAMESPACE, api=api_of(server))
        self.seen: asyncio.Queue[Pod] = asyncio.Queue()
        self.names: list[str] = []  # every report, in order
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.watch.watch(self._seen))

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task
        # Reports the stopped watch made but no test read (a server may replay the listed
        # pods as ADDED events) must not be taken for the next watch's.
        while not self.seen.empty():
            self.seen.get_nowait()

    async def _seen(self, pod: Pod) -> None:
        self.names.append(pod.name)
        await self.seen.put(pod)

    async def next(self, name: str) -> Pod:
        """The next report about ``name`` (earlier reports about others are dropped)."""
        while True:
            got = await asyncio.wait_for(self.seen.get(), 10)
            if got.name == name:
                return got


@pytest.fixture
async def watching(kmock: kmock.RawHandler) -> AsyncIterator[Watching]:
    await call(kmock, "post", PODS, pod("cos-head-0", "10.244.0.5"))
    await call(kmock, "post", PODS, pod("cos-worker-0", "", phase="Pending"))
    await call(kmock, "post", PODS, pod("other-0", "10.244.0.9", app="other"))
    watching = Watching(kmock)
    watching.start()
    yield watching
    await watching.stop()


async def test_listed_pods_are_reported_with_their_state(watching: Watching) -> None:
    assert await watching.next("cos-head-0") == Pod("cos-head-0", "10.244.0.5", running=True)
    assert await watching.next("cos-worker-0") == Pod("cos-worker-0", "", running=False)


async def test_changes_arrive_through_the_watch_and_other_apps_are_ignored(
    kmock: kmock.RawHandler, watching: Watching
) -> None:
    await watching.next("cos-worker-0")
    await call(kmock, "post", PODS, pod("other-1", "10.244.0.10", app="other"))
    await call(kmock, "post", PODS, pod("cos-worker-1", "10.244.0.7"))
    assert await watching.next("cos-worker-1") == Pod("cos-worker-1", "10.244.0.7", running=True)
    deleting = {"metadata": {"deletionTimestamp": "2026-11-30T00:00:01Z"}}
    await call(kmock, "patch", f"{PODS}/cos-worker-1", deleting)
    assert await watching.next("cos-worker-1") == Pod(
        "cos-worker-1", "10.244.0.7", running=True, terminating=True
    )
    await call(kmock, "delete", f"{PODS}/cos-head-0")
    gone = await watching.next("cos-head-0")
    assert (gone.gone, gone.running, gone.ip) == (True, False, "10.244.0.5")
    assert "cos-worker-1" in watching.names
    assert not [name for name in watching.names if name.startswith("other")], watching.names


async def test_a_pod_deleted_while_no_watch_ran_is_reported_gone(
    kmock: kmock.RawHandler, watching: Watching
) -> None:
    await watching.next("cos-head-0")
    await watching.next("cos-worker-0")
    await watching.stop()
    await call(kmock, "delete", f"{PODS}/cos-worker-0")
    watching.start()
    gone = await watching.next("cos-worker-0")
    assert gone.gone and gone.name == "cos-worker-0"
    assert await watching.next("cos-head-0") == Pod("cos-head-0", "10.244.0.5", running=True)


async def test_an_unreachable_api_is_retried(watching: Watching) -> None:
    await watching.next("cos-head-0")
    unreachable = PodWatch(
        "cos-test",
        1,
        1.0,
        namespace=NAMESPACE,
        api=lambda: client.CoreV1Api(
            client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
        ),
    )
    task = asyncio.create_task(unreachable.watch(watching._seen))
    await asyncio.sleep(1.0)
    assert not task.done()  # still trying, not crashed
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_docker_mode_does_not_import_the_kubernetes_package() -> None:
    code = (
        "import sys, cli.main, cos.runtime._driver, cos.runtime, cos.runtime._node\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'kubernetes'], 'imported'\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
