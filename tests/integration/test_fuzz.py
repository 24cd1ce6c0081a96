"""Fuzzing every RPC served on the runtime's port: thousands of malformed, oversized and
unauthenticated requests each get a clear answer, and the runtime serves on afterwards
(real PostgreSQL, Ray, write and read handler processes).

hypothesis draws batches of calls, sent concurrently: well-formed requests with fuzzed
fields (any text, NUL, ids at and past the size limit, text and bytes up to 100 KB, shard
numbers far out of range, commands of any type URL), bodies of random bytes or of valid
requests cut or spliced with junk, and the operator token given, wrong or missing. Each
answer is checked against what a caller may expect of that request: an oracle written from
the documented rules, not from the runtime's code. A failing batch is shrunk by hypothesis
down to the calls that fail.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, message_factory, struct_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import given, settings
from hypothesis import strategies as st

import chief_of_state.v1
import cos.v1
from chief_of_state.v1 import manager_pb2, manager_pb2_grpc, service_pb2
from cos.v1 import cluster_pb2, cluster_pb2_grpc, subscription_pb2
from tests.support.commands import request, state_of
from tests.support.readsides import Reader, start_reader
from tests.support.runtimes import RunningRuntime, StartRuntime
from tests.support.serve import ADMIN_TOKEN, CLIENT_SERVICE, OPERATOR_METADATA, RUNTIME_SERVICES
from tests.support.waiting import wait_until

__all__ = ["start_reader"]  # the fixture, re-exported for pytest

log = logging.getLogger(__name__)
Code = grpc.StatusCode
Codes = frozenset[grpc.StatusCode]

NUM_SHARDS = 4
READ_SIDE = "fuzz-rs"
BATCH = 32  # calls in flight at once: one hypothesis example
BATCHES = 170  # hypothesis examples: 5,440 calls
LEAST_CALLS = 5_000
CALL_TIMEOUT = 10.0
MAX_DETAILS = 2_000  # a status message never echoes unbounded input
GOOD_TOKEN = f"Bearer {ADMIN_TOKEN}"
# Open to every caller, as the client API is (docs/security.md); the others are the
# operator API, behind the operator token.
OPEN_SERVICES = {CLIENT_SERVICE, "cos.v1.HistoryService", "cos.v1.SubscriptionService"}
# Services the runtime calls (the handlers'), which its port must not answer.
HANDLER_SERVICES = {
    "chief_of_state.v1.WriteSideHandlerService",
    "chief_of_state.v1.ReadSideHandlerService",
}
# The words of the test write handler's commands (tests/handlers/writer.py). A fuzzed
# command uses "add" alone: it asks for none of the deliberate failures, sleeps or odd events.
HANDLER_VERBS = {"add", "repeat", "sleep", "fail", "message", "legacy", "poison", "type_url"}
HANDLER_VERBS |= {"event_fail_at", "no_state_at", "state_bytes", "event_bytes"}
OK = frozenset({Code.OK})
INVALID = frozenset({Code.INVALID_ARGUMENT})

# -- the RPCs: every method of every service in our proto packages but the handlers' ----


@dataclass(frozen=True)
class Rpc:
    """One method served on the port, with its message classes."""

    service: str
    name: str
    request: type[Message]
    reply: type[Message]
    streaming: bool  # the server streams its replies

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def operator(self) -> bool:
        """Behind the operator token (every service but the open ones)."""
        return self.service not in OPEN_SERVICES


def _services() -> list[ServiceDescriptor]:
    found: list[ServiceDescriptor] = []
    for package in (chief_of_state.v1, cos.v1):
        for module in pkgutil.iter_modules(package.__path__):
            if module.name.endswith("_pb2"):
                proto = importlib.import_module(f"{package.__name__}.{module.name}")
                found.extend(proto.DESCRIPTOR.services_by_name.values())
    return found


def _rpcs(services: list[ServiceDescriptor]) -> tuple[Rpc, ...]:
    return tuple(
        Rpc(
            service.full_name,
            method.name,
            message_factory.GetMessageClass(method.input_type),
            message_factory.GetMessageClass(method.output_type),
            method.server_streaming,
        )
        for service in services
        for method in service.methods
    )


SERVICES = _services()
RPCS = _rpcs([s for s in SERVICES if s.full_name not in HANDLER_SERVICES])
NOT_SERVED = _rpcs([s for s in SERVICES if s.full_name in HANDLER_SERVICES])
RPC_AT = {rpc.path: rpc for rpc in RPCS}

# -- what the fuzzed fields hold --------------------------------------------------------


def _repeat(unit: Any, times: int) -> Any:
    return unit * times


# Around the limits: ids of 1,024 bytes of UTF-8 (ASCII, 2- and 4-byte characters), type
# URLs of 2,048 characters.
EDGE_TEXTS = ["", "\x00", "a\x00b", " ", "x" * 2048, "x" * 2049]
EDGE_TEXTS += [c * (1024 // len(c.encode()) + extra) for c in "xé\U0001f600" for extra in (0, 1)]
# Any code point but surrogates (which protobuf cannot send), NUL included; up to 100 KB
# of characters (up to 400 KB of UTF-8) by repeating a short unit.
TEXT = st.one_of(
    st.text(max_size=24),
    st.sampled_from(EDGE_TEXTS),
    st.builds(_repeat, st.text(min_size=1, max_size=8), st.integers(1, 12_500)),
)
BYTES = st.one_of(
    st.binary(max_size=256),
    st.builds(_repeat, st.binary(min_size=1, max_size=8), st.integers(1, 12_500)),
)
# Ids that exist (or pass every check) as often as fuzzed ones.
ENTITY_IDS = st.one_of(st.sampled_from(["fuzz-a", "fuzz-b"]), st.text(min_size=1), TEXT)
READ_SIDE_IDS = st.one_of(
    st.just(READ_SIDE),
    st.just(READ_SIDE),
    st.sampled_from([READ_SIDE.upper(), f"{READ_SIDE}\x00", f"{READ_SIDE} "]),
    TEXT,
)
# Negative numbers reach a uint64 field as they travel on the wire: modulo 2**64.
SHARDS = st.one_of(st.integers(0, NUM_SHARDS + 1), st.integers(-(2**63), 2**64 - 1)).map(
    lambda n: n % 2**64
)


def _is_struct(type_url: str) -> bool:
    return type_url.rsplit("/", 1)[-1] == struct_pb2.Struct.DESCRIPTOR.full_name


def _packed(type_url: str, value: bytes) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=value)


def _struct_command(adds: list[float], junk: dict[str, Any]) -> any_pb2.Any:
    message = struct_pb2.Struct()
    message.update(junk)
    if adds:
        message.update({"add": adds})
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


TYPE_URLS = st.one_of(TEXT, TEXT.map(lambda name: f"type.googleapis.com/{name}"))
# A command the test handler understands ("add", with any numbers and junk fields), or any
# other Any: the handler answers those with no event.
COMMANDS = st.one_of(
    st.builds(
        _struct_command,
        st.lists(st.one_of(st.floats(), st.integers(-(2**53), 2**53)), max_size=4),
        st.dictionaries(
            st.text(max_size=8).filter(lambda key: key not in HANDLER_VERBS),
            st.one_of(st.none(), st.booleans(), st.floats(), st.text(max_size=16)),
            max_size=3,
        ),
    ),
    st.builds(_packed, TYPE_URLS.filter(lambda url: not _is_struct(url)), BYTES),
)
# Revisions and counts (uint32): the small ones an entity has, or any.
REVISIONS = st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1))
CURSORS = st.builds(
    subscription_pb2.Cursor,
    positions=st.lists(
        st.builds(subscription_pb2.ShardPosition, shard=REVISIONS, position=SHARDS), max_size=6
    ),
    shard_count=REVISIONS,
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "entity_id": ENTITY_IDS,
    "command": COMMANDS,
    "read_side_id": READ_SIDE_IDS,
    "cluster_shard_number": SHARDS,
    "from_revision": REVISIONS,
    "to_revision": REVISIONS,
    "limit": REVISIONS,
    "revision": REVISIONS,
    "after_revision": REVISIONS,
    "after": CURSORS,
    "from_beginning": st.booleans(),
    "from_now": st.booleans(),
}


def requests(rpc: Rpc) -> st.SearchStrategy[Message]:
    """Well-formed requests of ``rpc``: every field fuzzed, or some left unset."""
    fields = {f.name: FIELDS[f.name] for f in rpc.request.DESCRIPTOR.fields}
    values = st.one_of(
        st.fixed_dictionaries(fields),
        st.fixed_dictionaries(fields),
        st.fixed_dictionaries({}, optional=fields),
    )
    return values.map(lambda given: rpc.request(**given))


def _spliced(body: bytes, at: int, junk: bytes) -> bytes:
    at %= len(body) + 1
    return body[:at] + junk + body[at:]


def bodies(rpc: Rpc) -> st.SearchStrategy[bytes]:
    """Request bodies: valid ones (half of them), valid ones cut short or with junk
    spliced in, and random bytes."""
    valid = requests(rpc).map(lambda message: message.SerializeToString())
    return st.one_of(
        valid,
        valid,
        valid,
        st.builds(lambda body, at: body[: at % (len(body) + 1)], valid, st.integers(0, 2**16)),
        st.builds(_spliced, valid, st.integers(0, 2**16), st.binary(min_size=1, max_size=16)),
        st.binary(max_size=512),
    )


# gRPC sends printable ASCII only in metadata values.
_TOKEN_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
TOKENS = st.one_of(
    st.just(GOOD_TOKEN),
    st.just(GOOD_TOKEN),
    st.none(),
    st.text(_TOKEN_CHARS, min_size=1, max_size=40).map(lambda token: f"Bearer {token}"),
    st.text(_TOKEN_CHARS, min_size=1, max_size=40),
)

# -- a call, and what its caller may expect ---------------------------------------------


def _clip(value: object) -> str:
    text = repr(value)
    if len(text) <= 120:
        return text
    size = f"{len(value)} long" if isinstance(value, (str, bytes)) else f"{len(text)} in repr"
    return f"{text[:100]}... ({size})"


def _fields(message: Message) -> str:
    return ", ".join(f"{f.name}={_shown(value)}" for f, value in message.ListFields())


def _shown(value: object) -> str:
    return f"{{{_fields(value)}}}" if isinstance(value, Message) else _clip(value)


def _decoded(rpc: Rpc, body: bytes) -> Message | None:
    """The request as the server decodes it, or None when it does not decode."""
    try:
        return rpc.request.FromString(body)
    except (DecodeError, ValueError):  # ValueError: invalid UTF-8 in a string field
        return None


@dataclass(frozen=True)
class Call:
    """One fuzzed call: a request body sent to the method at ``path`` (a string, so that
    hypothesis prints a failing call short enough to paste), with an authorization header."""

    path: str
    body: bytes
    token: str | None

    @property
    def rpc(self) -> Rpc:
        return RPC_AT[self.path]

    @property
    def authorized(self) -> bool:
        return self.token is not None and (
            self.token[:7].lower() == "bearer " and self.token[7:] == ADMIN_TOKEN
        )

    def __repr__(self) -> str:
        decoded = _decoded(self.rpc, self.body)
        request = "undecodable " + _clip(self.body) if decoded is None else _fields(decoded)
        return f"{self.rpc.name}({request}; authorization={self.token!r})"


def calls(rpc: Rpc) -> st.SearchStrategy[Call]:
    return st.builds(Call, st.just(rpc.path), bodies(rpc), TOKENS)


BATCHES_OF_CALLS = st.lists(st.one_of(*map(calls, RPCS)), min_size=BATCH, max_size=BATCH)


def _id_ok(entity_id: str) -> bool:
    """Documented: not empty, at most 1,024 bytes of UTF-8, no NUL."""
    return 0 < len(entity_id.encode()) <= 1024 and "\x00" not in entity_id


def _type_url_ok(type_url: str) -> bool:
    """Documented: a type URL is given, of at most 2,048 characters, with no NUL."""
    return 0 < len(type_url) <= 2048 and "\x00" not in type_url


def _handler_answer(command: any_pb2.Any) -> Codes:
    """What the test write handler answers, which the runtime passes on unchanged."""
    if not command.Is(struct_pb2.Struct.DESCRIPTOR):
        return OK  # a command it does not know: no event
    try:
        fields = struct_pb2.Struct.FromString(command.value).fields
    except DecodeError:
        return frozenset({Code.UNKNOWN})  # the handler's own Unpack raises
    assert not set(fields) & (HANDLER_VERBS - {"add"}), f"not a fuzzed command: {fields}"
    return OK


def _process_command(request: Any) -> Codes:
    if not _id_ok(request.entity_id) or not _type_url_ok(request.command.type_url):
        return INVALID
    return _handler_answer(request.command)


def _get_state(request: Any) -> Codes:
    return frozenset({Code.OK, Code.NOT_FOUND}) if _id_ok(request.entity_id) else INVALID


def _shard_asked(request: Any) -> int | None:
    shard = request.DESCRIPTOR.fields_by_name.get("cluster_shard_number")
    if shard is None or (shard.has_presence and not request.HasField(shard.name)):
        return None
    return int(request.cluster_shard_number)


# What a read of the history may find: the entity, not yet, not so far.
HISTORY = frozenset({Code.OK, Code.NOT_FOUND, Code.OUT_OF_RANGE})


def _get_events(request: Any) -> Codes:
    first = max(request.from_revision, 1)
    if not _id_ok(request.entity_id) or 0 < request.to_revision < first:
        return INVALID
    return HISTORY


def _get_state_at(request: Any) -> Codes:
    return HISTORY if _id_ok(request.entity_id) and request.revision > 0 else INVALID


def _read_side(request: Any) -> Codes:
    """Every other RPC names a read side, and some a shard."""
    if request.read_side_id != READ_SIDE:
        return frozenset({Code.NOT_FOUND})
    shard = _shard_asked(request)
    return INVALID if shard is not None and shard >= NUM_SHARDS else OK


ORACLES: dict[str, Callable[[Any], Codes]] = {
    "ProcessCommand": _process_command,
    "GetState": _get_state,
    "GetShards": lambda _: OK,
    "GetClusterHealth": lambda _: OK,
    "GetEvents": _get_events,
    "GetStateAt": _get_state_at,
    # The runtime fuzzed runs without COS_SUBSCRIPTION_ENABLED (a stream would never end).
    "Subscribe": lambda _: frozenset({Code.UNIMPLEMENTED}),
    "SubscribeAll": lambda _: frozenset({Code.UNIMPLEMENTED}),
}


def expected(call: Call) -> Codes:
    """The statuses a caller may get for ``call``."""
    request = _decoded(call.rpc, call.body)
    if request is None:
        return INVALID  # before the operator token is even looked at
    if call.rpc.operator and not call.authorized:
        return frozenset({Code.UNAUTHENTICATED})
    return ORACLES.get(call.rpc.name, _read_side)(request)


def _all_shards(request: Any, reply: Any) -> bool:
    return [o.cluster_shard_number for o in reply.offsets] == list(range(NUM_SHARDS))


def _status_shards(request: Any, reply: Any) -> bool:
    asked = _shard_asked(request)
    wanted = list(range(NUM_SHARDS)) if asked is None else [asked]
    return [s.cluster_shard_number for s in reply.shards] == wanted


# What a successful reply holds; the eight operator changes answer successful=true.
REPLY_CHECKS: dict[str, Callable[[Any, Any], bool]] = {
    "ProcessCommand": lambda q, r: r.meta.entity_id == q.entity_id,
    "GetState": lambda q, r: r.meta.entity_id == q.entity_id and r.meta.revision_number > 0,
    "GetShards": lambda q, r: [s.shard for s in r.shards] == list(range(NUM_SHARDS)),
    "GetClusterHealth": lambda q, r: (
        sorted(s for h in r.hosts for s in h.shards) == list(range(NUM_SHARDS))
    ),
    "GetLatestOffset": _all_shards,
    "GetLatestOffsetByShard": lambda q, r: r.offsets.cluster_shard_number == q.cluster_shard_number,
    "GetReadSideStatus": _status_shards,
    "GetStateAt": lambda q, r: (
        (r.meta.entity_id, r.meta.revision_number) == (q.entity_id, q.revision)
    ),
}
# The same for a streamed reply, given all its messages.
STREAM_CHECKS: dict[str, Callable[[Any, list[Any]], bool]] = {
    "GetEvents": lambda q, rs: (
        all(r.meta.entity_id == q.entity_id for r in rs)
        and [r.meta.revision_number for r in rs]
        == list(range(max(q.from_revision, 1), max(q.from_revision, 1) + len(rs)))
        and (q.limit == 0 or len(rs) <= q.limit)
    ),
}

# -- sending and judging a batch --------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How the runtime answered a call."""

    code: grpc.StatusCode
    details: str
    replies: tuple[bytes, ...]  # one for a unary call, each message of a stream


def _start(channel: grpc.Channel, call: Call) -> Any:
    # No (de)serializers: the body goes as is, undecodable or not.
    path = call.rpc.path
    metadata = (("authorization", call.token),) if call.token is not None else ()
    if call.rpc.streaming:  # the call starts now; its messages are read in _outcome
        stream = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
        return stream(call.body, timeout=CALL_TIMEOUT, metadata=metadata)
    method = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    return method.future(call.body, timeout=CALL_TIMEOUT, metadata=metadata)


def _outcome(call: Call, started: Any) -> Outcome:
    try:
        replies = tuple(started) if call.rpc.streaming else (started.result(),)
    except grpc.RpcError as error:
        return Outcome(error.code(), error.details() or "", ())
    return Outcome(Code.OK, "", replies)


def send(channel: grpc.Channel, batch: list[Call]) -> list[Outcome]:
    """Send the whole batch at once; wait for every answer."""
    started = [_start(channel, call) for call in batch]
    return [_outcome(call, one) for call, one in zip(batch, started, strict=True)]


def problem(call: Call, outcome: Outcome) -> str | None:
    """What is wrong with the answer to ``call``, if anything."""
    wanted = expected(call)
    if outcome.code not in wanted:
        names = "/".join(sorted(code.name for code in wanted))
        return f"{outcome.code.name} {_clip(outcome.details)}, expected {names}"
    if len(outcome.details) >= MAX_DETAILS:
        return f"a {len(outcome.details)} character message: {_clip(outcome.details)}"
    if outcome.code is Code.OK and call.rpc.streaming:
        replies = [call.rpc.reply.FromString(reply) for reply in outcome.replies]
        if not STREAM_CHECKS[call.rpc.name](_decoded(call.rpc, call.body), replies):
            return f"OK with a wrong stream: {[_fields(r) for r in replies]}"
    elif outcome.code is Code.OK:
        check = REPLY_CHECKS.get(call.rpc.name, lambda q, r: r.successful is True)
        (reply,) = (call.rpc.reply.FromString(reply) for reply in outcome.replies)
        if not check(_decoded(call.rpc, call.body), reply):
            return f"OK with a wrong reply: {_fields(reply)}"
    return None


@dataclass
class Tally:
    """Statuses seen, by RPC."""

    seen: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, batch: list[Call], outcomes: list[Outcome]) -> None:
        self.seen.update((c.rpc.name, o.code.name) for c, o in zip(batch, outcomes, strict=True))

    @property
    def total(self) -> int:
        return sum(self.seen.values())

    def by_rpc(self) -> dict[str, Counter[str]]:
        table: dict[str, Counter[str]] = {}
        for (rpc, code), count in self.seen.items():
            table.setdefault(rpc, Counter())[code] = count
        return table


def fuzz(target: str, tally: Tally) -> None:
    """Send BATCHES batches of fuzzed calls to ``target``; fail on the first wrong answer
    (which hypothesis then shrinks)."""
    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(target, options=unlimited) as channel:

        @settings(max_examples=BATCHES, derandomize=True, database=None, deadline=None)
        @given(batch=BATCHES_OF_CALLS)
        def batch_is_answered_clearly(batch: list[Call]) -> None:
            outcomes = send(channel, batch)
            tally.add(batch, outcomes)
            wrong = [(c, problem(c, o)) for c, o in zip(batch, outcomes, strict=True)]
            report = [f"{call!r} -> {found}" for call, found in wrong if found]
            assert not report, "\n".join(report)

        batch_is_answered_clearly()


# -- the test ---------------------------------------------------------------------------


async def test_every_rpc_answers_fuzzed_requests_clearly_and_keeps_serving(
    start_cos: StartRuntime, start_reader: Callable[..., Reader]
) -> None:
    reader = start_reader(READ_SIDE)
    cos = await start_cos(
        num_shards=NUM_SHARDS,
        read_side_enabled=True,
        read_sides=(reader.config(),),
        read_side_retry_min_seconds=0.05,
        read_side_retry_max_seconds=0.2,
    )
    (host,) = cos.runtime.hosts.values()
    pid = await host.pid.remote()
    await only_our_services_are_served(cos)
    tally = Tally()
    await asyncio.to_thread(fuzz, f"127.0.0.1:{cos.settings.server.port}", tally)
    for rpc, codes in sorted(tally.by_rpc().items()):
        log.info("%-24s %5d calls: %s", rpc, sum(codes.values()), dict(codes.most_common()))
    assert tally.total >= LEAST_CALLS, tally.total
    assert set(tally.by_rpc()) == {rpc.name for rpc in RPCS}
    assert await host.pid.remote() == pid  # the same process: it never crashed
    await serves_good_requests(cos, reader)


async def only_our_services_are_served(cos: RunningRuntime) -> None:
    """The services fuzzed are the ones the port answers: a handler's are not."""
    assert {rpc.service for rpc in RPCS} == RUNTIME_SERVICES
    for rpc in NOT_SERVED:
        method = cos.channel.unary_unary(rpc.path, request_serializer=None)
        try:
            await method(b"", metadata=OPERATOR_METADATA, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            assert error.code() == Code.UNIMPLEMENTED, (rpc.path, error)
        else:
            raise AssertionError(f"{rpc.path} answered")


async def serves_good_requests(cos: RunningRuntime, reader: Reader) -> None:
    """Commands, reads, the shard table and read-side delivery all still work."""
    first = await cos.stub.ProcessCommand(request("after-fuzz", add=[2]), timeout=CALL_TIMEOUT)
    second = await cos.stub.ProcessCommand(request("after-fuzz", add=[3]), timeout=CALL_TIMEOUT)
    assert (first.meta.revision_number, state_of(first)["total"]) == (1, 2.0)
    assert (second.meta.revision_number, state_of(second)["total"]) == (2, 5.0)
    read = service_pb2.GetStateRequest(entity_id="after-fuzz")
    got = await cos.stub.GetState(read, timeout=CALL_TIMEOUT)
    assert (got.meta.revision_number, state_of(got)["total"]) == (2, 5.0)
    shards = await cluster_pb2_grpc.ClusterServiceStub(cos.channel).GetShards(
        cluster_pb2.GetShardsRequest(), metadata=OPERATOR_METADATA, timeout=CALL_TIMEOUT
    )
    assert [s.shard for s in shards.shards] == list(range(NUM_SHARDS))
    # The fuzz paused shards at random: resume them all, then delivery goes on.
    await manager_pb2_grpc.ReadSideManagerServiceStub(cos.channel).ResumeReadSide(
        manager_pb2.ResumeReadSideRequest(read_side_id=READ_SIDE),
        metadata=OPERATOR_METADATA,
        timeout=CALL_TIMEOUT,
    )
    await wait_until(lambda: ("after-fuzz", 2) in reader.delivered(), what="delivery")
