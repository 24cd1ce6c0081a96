"""The runtime's pods, from the Kubernetes API (``COS_DEPLOYMENT_MODE=kubernetes``).

The coordinator lists and watches the pods labelled ``app=<COS_KUBERNETES_APP_LABEL>``
in its namespace, with the pod's own ServiceAccount (in-cluster configuration; the
chart's Role allows ``get``, ``list`` and ``watch`` on pods, nothing more). Only this
module imports the ``kubernetes`` package, and only Kubernetes mode imports this module.

The client is synchronous: listing runs in a worker thread, and the watch stream is
read by a daemon thread that hands each event to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from cos.sharding import Pod, PodSeen

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# The API server ends a watch after this long; the stream is then resumed.
_WATCH_SECONDS = 60
_RETRY_MIN, _RETRY_MAX = 0.5, 10.0


def in_cluster_api() -> client.CoreV1Api:
    """The core API with the pod's ServiceAccount (a kubeconfig outside a cluster)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.CoreV1Api()


def own_namespace() -> str:
    """The namespace this pod runs in."""
    return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()


def pod_of(obj: client.V1Pod, gone: bool = False) -> Pod:
    """What formation needs of a pod."""
    meta, status = obj.metadata or client.V1ObjectMeta(), obj.status or client.V1PodStatus()
    containers = status.container_statuses or []
    running = (
        status.phase == "Running"
        and bool(containers)
        and all(c.state is not None and c.state.running is not None for c in containers)
    )
    return Pod(
        name=str(meta.name),
        ip=status.pod_ip or "",
        running=running and not gone,
        terminating=meta.deletion_timestamp is not None,
        gone=gone,
    )


class WatchExpired(RuntimeError):
    """The API server ended the watch with an error (e.g. 410 Gone): list again."""


class PodWatch:
    """:class:`cos.sharding.formation.PodSource` over the Kubernetes API."""

    def __init__(
        self,
        app_label: str,
        expected: int,
        timeout: float,
        namespace: str | None = None,
        api: Callable[[], client.CoreV1Api] = in_cluster_api,
    ) -> None:
        self.expected = expected
        self.timeout = timeout
        self._label = app_label
        self._namespace = namespace
        self._api = api
        self.selector = f"pods labelled app={app_label}"
        self._known: dict[str, Pod] = {}

    async def watch(self, seen: PodSeen) -> None:
        delay = _RETRY_MIN
        while True:
            try:
                await self._list_and_watch(seen)
                delay = _RETRY_MIN
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching %s failed (%s); again in %.1f s", self.selector, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)

    def _ours(self, obj: client.V1Pod) -> bool:
        # Servers that ignore the label selector exist (test fakes): check it here too.
        labels = (obj.metadata.labels if obj.metadata else None) or {}
        return labels.get("app") == self._label

    async def _list_and_watch(self, seen: PodSeen) -> None:
        api = await asyncio.to_thread(self._api)
        namespace = self._namespace or await asyncio.to_thread(own_namespace)
        listed = await asyncio.to_thread(
            api.list_namespaced_pod, str(namespace), label_selector=f"app={self._label}"
        )
        version = listed.metadata.resource_version if listed.metadata else None
        pods = [obj for obj in listed.items if self._ours(obj)]
        log.info("%s in namespace %s: %d listed, watching", self.selector, namespace, len(pods))
        listed_pods = {pod.name: pod for pod in map(pod_of, pods)}
        # Deleted while no watch ran (between two watches, or while the API was away).
        for name in self._known.keys() - listed_pods.keys():
            await self._report(seen, replace(self._known[name], running=False, gone=True))
        for pod in listed_pods.values():
            await self._report(seen, pod)
        events: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()

        def pump() -> None:
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    api.list_namespaced_pod,
                    namespace,
                    label_selector=f"app={self._label}",
                    resource_version=version,
                    timeout_seconds=_WATCH_SECONDS,
                ):
                    loop.call_soon_threadsafe(events.put_nowait, event)
                loop.call_soon_threadsafe(events.put_nowait, None)
            except BaseException as exc:  # handed to the loop, which raises it
                loop.call_soon_threadsafe(events.put_nowait, exc)

        threading.Thread(target=pump, name="cos-pod-watch", daemon=True).start()
        try:
            while (event := await events.get()) is not None:
                if isinstance(event, BaseException):
                    raise event
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    raise WatchExpired(f"the API server ended the watch: {event['raw_object']}")
                if kind in ("ADDED", "MODIFIED", "DELETED") and self._ours(obj):
                    await self._report(seen, pod_of(obj, gone=kind == "DELETED"))
        finally:
            stream.stop()  # type: ignore[no-untyped-call]

    async def _report(self, seen: PodSeen, pod: Pod) -> None:
        if pod.gone:
            self._known.pop(pod.name, None)
        else:
            self._known[pod.name] = pod
        await seen(pod)
