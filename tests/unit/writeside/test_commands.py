"""The command path's interceptor chain (pure: no gRPC, no Ray)."""

from __future__ import annotations

from google.protobuf import any_pb2

from cos.writeside import (
    CommandHandler,
    CommandInterceptor,
    CommandRequest,
    EntityState,
    StateRequest,
    chain,
)
from cos.writeside._entity import initial_state


class FakeRouter:
    """The end of the chain: records what reached it."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def process_command(self, request: CommandRequest) -> EntityState:
        self.seen.append(f"router {request.entity_id}")
        return initial_state(request.entity_id)

    async def get_state(self, request: StateRequest) -> EntityState:
        self.seen.append(f"router state {request.entity_id}")
        return initial_state(request.entity_id)


def recording(name: str, seen: list[str]) -> type[CommandInterceptor]:
    class Recording(CommandInterceptor):
        async def process_command(self, request: CommandRequest) -> EntityState:
            seen.append(f"{name} before")
            result = await self.next.process_command(request)
            seen.append(f"{name} after")
            return result

    return Recording


async def test_interceptors_wrap_the_router_first_outermost() -> None:
    router = FakeRouter()
    handler: CommandHandler = chain(
        router, [recording("outer", router.seen), recording("inner", router.seen)]
    )
    result = await handler.process_command(CommandRequest("e-1", any_pb2.Any()))
    assert result.revision == 0
    assert router.seen == [
        "outer before",
        "inner before",
        "router e-1",
        "inner after",
        "outer after",
    ]
    # What an interceptor does not override goes straight on.
    await handler.get_state(StateRequest("e-2"))
    assert router.seen[-1] == "router state e-2"


async def test_no_interceptor_is_the_router_itself() -> None:
    router = FakeRouter()
    assert chain(router, []) is router
