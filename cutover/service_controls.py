"""What the cutover drives in the services world, as small interfaces.

``services.world.ServiceWorld`` provides all three (its ``proxy`` is HAProxy's runtime
API, its fences are ``FenceClient``s on the services' admin ports). The cutover only
depends on these shapes, so a world started elsewhere, or one built in a test, plugs in.
"""

from __future__ import annotations

from typing import Literal, Protocol

Side = Literal["legacy", "rune"]


class RoutesView(Protocol):
    @property
    def reads(self) -> str: ...

    @property
    def writes(self) -> str: ...


class TrafficProxy(Protocol):
    """Where new reads and writes go (``services.proxy.runtime_client.HAProxyRuntime``)."""

    def route_reads(self, to: Side) -> RoutesView: ...

    def route_writes(self, to: Side) -> RoutesView: ...

    def current_routes(self) -> RoutesView: ...


class FenceView(Protocol):
    @property
    def writes(self) -> str: ...

    @property
    def held(self) -> int: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def drained(self) -> bool: ...


class WriteFence(Protocol):
    """One service's write fence (``services.rune_service.fence_client.FenceClient``)."""

    def hold(self, *, drain_timeout: float | None = None) -> FenceView: ...

    def forward(self, to: str) -> FenceView: ...

    def open(self) -> FenceView: ...

    def status(self) -> FenceView: ...


class ServicesView(Protocol):
    """The services the cutover moves traffic between."""

    @property
    def proxy(self) -> TrafficProxy: ...

    @property
    def legacy_fence(self) -> WriteFence: ...

    @property
    def rune_fence(self) -> WriteFence: ...

    @property
    def legacy_url(self) -> str: ...

    @property
    def rune_url(self) -> str: ...
