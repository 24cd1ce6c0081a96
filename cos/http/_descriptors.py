"""The message types the HTTP/JSON API shows as JSON: the descriptor sets of
``COS_PROTO_DESCRIPTORS``, read once at start-up and loaded into a pool of their own.

A set built without ``--include_imports`` lacks the files it imports; those of protobuf's
well-known types (``google/protobuf/*.proto``) are taken from the runtime's own copy,
any other missing import stops start-up, naming the file and the way to fix it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError

from cos.errors import DescriptorsError

# Imported so that the default pool holds every well-known type a set may import.
for _name in ("any", "duration", "empty", "field_mask", "struct", "timestamp", "wrappers"):
    importlib.import_module(f"google.protobuf.{_name}_pb2")
_SETTING = "COS_PROTO_DESCRIPTORS"

Files = Mapping[str, descriptor_pb2.FileDescriptorProto]


@dataclass(frozen=True)
class DescriptorSet:
    """A descriptor set file as read, once, at start-up: nodes get its bytes, not its path."""

    path: str
    data: bytes


def descriptor_paths(setting: str | None) -> list[str]:
    """The paths of the comma-separated setting (blank entries ignored)."""
    return [part.strip() for part in (setting or "").split(",") if part.strip()]


def read_sets(setting: str | None) -> tuple[DescriptorSet, ...]:
    """The files of the comma-separated setting, read; raises :class:`DescriptorsError`
    naming the setting and the file when one cannot be read."""
    return tuple(DescriptorSet(path, _read(path)) for path in descriptor_paths(setting))


def load_pool(sets: Sequence[DescriptorSet]) -> descriptor_pool.DescriptorPool:
    """A pool holding every file of ``sets``; raises :class:`DescriptorsError` naming the
    setting and the file when one cannot be used."""
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for found in sets:
        for proto in _parse(found).file:
            files.setdefault(proto.name, proto)
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    for name in files:
        _add(pool, name, files, added, needed_by=None)
    return pool


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DescriptorsError(f"{_SETTING}: cannot read {path}: {exc.strerror}") from None


def _parse(found: DescriptorSet) -> descriptor_pb2.FileDescriptorSet:
    try:
        return descriptor_pb2.FileDescriptorSet.FromString(found.data)
    except DecodeError:
        raise DescriptorsError(
            f"{_SETTING}: {found.path} is not a descriptor set (make one with protoc"
            " --descriptor_set_out)"
        ) from None


def _add(
    pool: descriptor_pool.DescriptorPool,
    name: str,
    files: Files,
    added: set[str],
    needed_by: str | None,
) -> None:
    """Add ``name`` to ``pool`` after the files it imports."""
    if name in added:
        return
    proto = files.get(name) or _well_known(name)
    if proto is None:
        raise DescriptorsError(
            f"{_SETTING}: {needed_by} imports {name}, which no descriptor set holds"
            " (build the sets with protoc --include_imports)"
        )
    for dependency in proto.dependency:
        _add(pool, dependency, files, added, needed_by=name)
    try:
        pool.AddSerializedFile(proto.SerializeToString())
    except (TypeError, ValueError) as exc:
        raise DescriptorsError(f"{_SETTING}: {name} cannot be loaded: {exc}") from None
    added.add(name)


def _well_known(name: str) -> descriptor_pb2.FileDescriptorProto | None:
    if not name.startswith("google/protobuf/"):
        return None
    try:
        found = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        return None
    proto = descriptor_pb2.FileDescriptorProto()
    found.CopyToProto(proto)
    return proto
