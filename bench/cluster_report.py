"""The results of bench/cluster.py's three parts, and the report they are printed as."""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import ray
from cluster_setup import ClusterBenchSettings, Deployment, Joined, Span
from load import Call, LoadResult
from ray.cluster_utils import Cluster
from run import _table

from cos.runtime import FAST_NODE_FAILURE


@dataclass(frozen=True)
class ForwardResult:
    """Both groups' loads over one window, and their balances read back."""

    workers: int
    loads: dict[str, LoadResult]
    matched: int
    problems: list[str]
    busy_cores: float


@dataclass(frozen=True)
class HandoverTrial:
    """One join and one leave of a third node, and the light load's calls meanwhile."""

    workers: int  # of the light load
    joined: Joined
    left: Span  # deregister_host: the hand-over of its shards back
    calls: list[Call]
    matched: int
    opened: int

    def max_latency_ms(self, span: Span) -> float:
        """The slowest call in flight during ``span`` (succeeded or not)."""
        return max((c.latency_ms for c in self.calls if span.overlaps(c)), default=math.nan)

    def during(self, call: Call) -> bool:
        """Whether ``call`` was in flight during either hand-over."""
        return self.joined.register.overlaps(call) or self.left.overlaps(call)

    def unavailable(self) -> int:
        """Calls in flight during either hand-over that failed UNAVAILABLE."""
        return sum(1 for c in self.calls if c.code == "UNAVAILABLE" and self.during(c))


@dataclass(frozen=True)
class FailoverTrial:
    """Seconds from killing a node until each step of the failover was seen."""

    shards: int  # the lost host's
    host_gone: float  # its process had exited
    moved: float  # the table gave all its shards to live hosts
    served: float  # ... and each of them answered a command through host A


@dataclass
class Report:
    """What the run found; filled part by part, so a failed run still shows the rest."""

    settings: ClusterBenchSettings
    setup: list[str] = field(default_factory=list)
    forward: ForwardResult | None = None
    handovers: list[HandoverTrial] = field(default_factory=list)
    failovers: list[FailoverTrial] = field(default_factory=list)


def setup_lines(dep: Deployment, cluster: Cluster) -> list[str]:
    """What the figures were taken on: the cluster, host A, the failure-detection settings."""
    cos, health, head = dep.settings, FAST_NODE_FAILURE, cluster.head_node
    assert head is not None, "started with a head"
    return [
        f"Ray {ray.__version__}: 2 nodes of 1 CPU on 127.0.0.1 (a third per trial),"
        f" {os.cpu_count()} cores; Ray logs in {head.get_logs_dir_path()}",
        f"runtime {cos.cluster_name}: {cos.num_shards} shards; schema {dep.target.schema};"
        f" every command to host A ({dep.home}) at {dep.address}",
        f"failure detection: host_failure_timeout_seconds {cos.host_failure_timeout_seconds},"
        f" Ray health checks every {health['health_check_period_ms']} ms,"
        f" dead after {health['health_check_failure_threshold']} misses;"
        f" forward_retry_seconds {cos.forward_retry_seconds}",
    ]


def format_report(report: Report) -> str:
    """The setup, then a table per part that ran."""
    sections = [report.setup]
    if report.forward is not None:
        sections.append(format_forward(report.forward))
    if report.handovers:
        sections.append(format_handovers(report.handovers))
    if report.failovers:
        sections.append(format_failovers(report.failovers))
    return "\n\n".join("\n".join(lines) for lines in sections if lines)


def format_forward(result: ForwardResult) -> list[str]:
    """Part 1: a row per group, the ratios, the balances."""
    header = ("group", "workers", "accounts", "commands", "cmd/s", "p50 ms", "p95 ms", "p99 ms")
    rows: list[tuple[str, ...]] = [(*header, "errors")]
    rows += [_group_row(name, result.workers, load) for name, load in result.loads.items()]
    local, forwarded = result.loads["local"], result.loads["forwarded"]
    throughput = forwarded.throughput / local.throughput if local.throughput else math.nan
    p50 = forwarded.percentile_ms(0.5) / local.percentile_ms(0.5)
    opened = sum(1 for r in result.loads.values() for b in r.balances.values() if b is not None)
    lines = [
        f"forwarded vs local ({local.window_seconds:.1f} s window, every call to host A)",
        *_table(rows),
        f"forwarded/local: throughput {throughput:.2f}, p50 latency {p50:.2f}",
        f"balances {result.matched}/{opened} match;"
        f" machine {result.busy_cores:.2f} of {os.cpu_count()} cores busy",
    ]
    for name, load in result.loads.items():
        if load.errors or load.warmup_errors:
            lines.append(f"  {name}: errors {dict(load.errors)}, else {dict(load.warmup_errors)}")
    return lines + [f"  {problem}" for problem in result.problems[:3]]


def _group_row(name: str, workers: int, load: LoadResult) -> tuple[str, ...]:
    percentiles = (f"{load.percentile_ms(q):.2f}" for q in (0.50, 0.95, 0.99))
    counts = (str(workers), str(len(load.balances)), str(load.commands))
    return (name, *counts, f"{load.throughput:.1f}", *percentiles, str(load.error_count))


def format_handovers(trials: list[HandoverTrial]) -> list[str]:
    """Part 2: a row per trial, then p50 and max of each column."""
    header: tuple[str, ...] = ("hand-over", "shards", "host start s", "join s", "join max ms")
    header += ("leave s", "leave max ms", "UNAVAILABLE")
    columns = [
        ("{:.0f}", [float(t.joined.shards) for t in trials]),
        ("{:.2f}", [t.joined.start.seconds for t in trials]),
        ("{:.3f}", [t.joined.register.seconds for t in trials]),
        ("{:.1f}", [t.max_latency_ms(t.joined.register) for t in trials]),
        ("{:.3f}", [t.left.seconds for t in trials]),
        ("{:.1f}", [t.max_latency_ms(t.left) for t in trials]),
        ("{:.0f}", [float(t.unavailable()) for t in trials]),
    ]
    calls = [call for t in trials for call in t.calls if not t.during(call)]
    quiet = [call.latency_ms for call in calls if call.code is None]
    errors = Counter(c.code for t in trials for c in t.calls if c.code is not None)
    matched, opened = sum(t.matched for t in trials), sum(t.opened for t in trials)
    return [
        f"hand-over ({trials[0].workers} workers of light load on host A; max ms: the slowest"
        " call in flight during the hand-over)",
        *_table([header, *_trial_rows(columns)]),
        f"light load p50 outside hand-overs {_median(quiet):.1f} ms;"
        f" errors {dict(errors) or 0}; balances {matched}/{opened} match",
    ]


def format_failovers(trials: list[FailoverTrial]) -> list[str]:
    """Part 3: a row per trial, then p50 and max of each column."""
    header = ("node loss", "shards", "host gone s", "table moved s", "served s")
    columns = [
        ("{:.0f}", [float(t.shards) for t in trials]),
        ("{:.2f}", [t.host_gone for t in trials]),
        ("{:.2f}", [t.moved for t in trials]),
        ("{:.2f}", [t.served for t in trials]),
    ]
    return [
        "node loss (seconds from the kill; served: every lost shard owned again and"
        " answering a command through host A)",
        *_table([header, *_trial_rows(columns)]),
    ]


def _trial_rows(columns: list[tuple[str, list[float]]]) -> list[tuple[str, ...]]:
    """A row per trial, then the p50 and the max of each column."""
    rows = [
        (f"trial {i + 1}", *(fmt.format(values[i]) for fmt, values in columns))
        for i in range(len(columns[0][1]))
    ]
    rows.append(("p50", *(fmt.format(_median(values)) for fmt, values in columns)))
    rows.append(("max", *(fmt.format(max(values)) for fmt, values in columns)))
    return rows


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan
