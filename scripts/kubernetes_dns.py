"""Cluster DNS for scripts/kubernetes-local.sh: Services and Endpoints as a dnsmasq hosts file.

No CoreDNS image can be pulled on these machines, so dnsmasq (`--hostsdir=DIR`, which re-reads
changed files) answers from DIR/cluster.hosts, kept here with the A records CoreDNS would serve:

    <svc>.<ns>.svc.<domain>          the ClusterIP; for a headless Service every endpoint address
    <host>.<svc>.<ns>.svc.<domain>   an endpoint address that carries a hostname (StatefulSet pods)

Like CoreDNS, only `addresses` count: the endpoints controller already puts not-ready pods there
when the Service has publishNotReadyAddresses (--not-ready adds notReadyAddresses regardless).
Follows the API with watches of the `kubernetes` client when it can be imported, else polls
`kubectl get -o json` every second.

    python scripts/kubernetes_dns.py --kubeconfig FILE --hosts-dir DIR [--domain cluster.local]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str]


class Store:
    """The Services and Endpoints seen so far, shared by the follower threads."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[Key, Obj]] = {"services": {}, "endpoints": {}}
        self.lock = threading.Lock()
        self.changed = threading.Event()

    def replace(self, kind: str, items: list[Obj]) -> None:
        with self.lock:
            self.objects[kind] = {key(o): o for o in items}
        self.changed.set()

    def apply(self, kind: str, event: str, obj: Obj) -> None:
        with self.lock:
            if event == "DELETED":
                self.objects[kind].pop(key(obj), None)
            else:
                self.objects[kind][key(obj)] = obj
        self.changed.set()


def key(obj: Obj) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def render(store: Store, domain: str, not_ready: bool) -> str:
    fields = ("addresses", "notReadyAddresses") if not_ready else ("addresses",)
    lines: set[str] = set()
    with store.lock:
        services, endpoints = store.objects["services"], store.objects["endpoints"]
        for (ns, name), service in services.items():
            fqdn = f"{name}.{ns}.svc.{domain}"
            cluster_ip = service.get("spec", {}).get("clusterIP")
            if cluster_ip and cluster_ip != "None":
                lines.add(f"{cluster_ip} {fqdn}")
                continue
            # headless (ExternalName Services have no endpoints and so no records)
            for subset in endpoints.get((ns, name), {}).get("subsets") or []:
                for address in (a for f in fields for a in subset.get(f) or []):
                    lines.add(f"{address['ip']} {fqdn}")
                    if address.get("hostname"):
                        lines.add(f"{address['ip']} {address['hostname']}.{fqdn}")
    return "".join(f"{line}\n" for line in sorted(lines))


def write_atomically(path: Path, text: str) -> None:
    # a dotfile, which dnsmasq's inotify ignores, renamed over the old file in one step
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # dnsmasq reads it after dropping root
    os.replace(tmp, path)


def warn(message: str) -> None:
    print(f"kubernetes-dns: {message}", file=sys.stderr, flush=True)


def follow_with_client(kubeconfig: str, store: Store) -> None:
    from kubernetes import client, config, watch

    config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    api = client.CoreV1Api()

    def follow(kind: str, lister: Callable[..., Any]) -> None:
        while True:  # list, then watch from the list's resourceVersion; relist when it ends
            try:
                listing = json.loads(lister(_preload_content=False).data)
                store.replace(kind, listing["items"])
                version = listing["metadata"]["resourceVersion"]
                watcher = watch.Watch()  # type: ignore[no-untyped-call]
                stream = watcher.stream(  # type: ignore[no-untyped-call]
                    lister, resource_version=version, timeout_seconds=300
                )
                for event in stream:
                    if event["type"] == "ERROR":  # e.g. 410 Gone: the version is too old
                        break
                    store.apply(kind, event["type"], event["raw_object"])
            except Exception as error:
                warn(f"{kind}: {error}")
                time.sleep(1)

    for kind, lister in (
        ("services", api.list_service_for_all_namespaces),
        ("endpoints", api.list_endpoints_for_all_namespaces),
    ):
        threading.Thread(target=follow, args=(kind, lister), daemon=True).start()


def poll_with_kubectl(kubectl: str, kubeconfig: str, store: Store) -> None:
    def poll() -> None:
        command = [kubectl, "--kubeconfig", kubeconfig, "get", "services,endpoints"]
        command += ["--all-namespaces", "-o", "json"]
        while True:
            try:
                run = subprocess.run(command, capture_output=True, text=True, timeout=30)
                if run.returncode:
                    raise RuntimeError(run.stderr.strip())
                items = json.loads(run.stdout)["items"]
                store.replace("services", [i for i in items if i["kind"] == "Service"])
                store.replace("endpoints", [i for i in items if i["kind"] == "Endpoints"])
            except Exception as error:
                warn(str(error))
            time.sleep(1)

    threading.Thread(target=poll, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--hosts-dir", required=True, type=Path)
    parser.add_argument("--domain", default="cluster.local")
    parser.add_argument("--kubectl", default="kubectl", help="used without the kubernetes client")
    parser.add_argument("--not-ready", action="store_true", help="also notReadyAddresses")
    args = parser.parse_args()
    store = Store()
    try:
        follow_with_client(args.kubeconfig, store)
        warn("following the API with the kubernetes client")
    except ImportError:
        poll_with_kubectl(args.kubectl, args.kubeconfig, store)
        warn("polling with kubectl")
    hosts, written = args.hosts_dir / "cluster.hosts", None
    while True:
        store.changed.wait()
        time.sleep(0.1)  # one write for a burst of events
        store.changed.clear()
        text = render(store, args.domain, args.not_ready)
        if text != written:
            write_atomically(hosts, text)
            written = text


if __name__ == "__main__":
    main()
