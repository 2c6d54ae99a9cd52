"""The services ``serve`` runs, each with start, stop and reload.

    DeliveryService   the spool, the couriers and the queue runner of one process
    IntakeService     the SMTP listeners of one process (on sockets the master bound)
    ControlService    the control channel (``postroom.control``) of the server

The master runs delivery (retries, and whatever a dead process left) and control, and
supervises the intake processes, each of which runs intake and delivery for the first
attempt of what it took in. With one process (``--workers 1``) all three run together.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from postroom import control
from postroom.delivery import aclose_all, couriers_for
from postroom.intake import Intake
from postroom.queue.spool import Spool
from postroom.runner import QueueRunner
from postroom.runtime import Reloader, Runtime, changed_keys
from postroom.site import Listener
from postroom.types import Courier, Render

if TYPE_CHECKING:
    from postroom.envelope import Envelope
    from postroom.lists.engine import ListEngine
    from postroom.lists.fanout import Renderer

# keys whose change means new couriers (connections, resolvers, relay settings)
_COURIER_SECTIONS = ("delivery.", "dns.", "site.hostname", "routing.", "mta_sts.")


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def reload(self, old: Runtime, new: Runtime) -> None:
        """Apply a new runtime (already in force in the reloader) to what is running."""


log = logging.getLogger(__name__)

LIST_POST = "list-post"  # postroom.lists.fanout.KIND, without importing the engine
LIST_ENGINE_MODULES = ("postroom.lists.engine", "postroom.lists.fanout")
# a process of a site with lists imports the engine this long after it starts, in a
# thread: by then a restarted process is taking mail again
WARM_AFTER = 1.0


class LazyLists:
    """The list engine behind the list courier and the renderer of list posts, imported
    on the first list message: most processes of a server never see one, and the engine's
    imports (the store, the email and DNS code) would slow every intake process's start,
    which is what a restart after a crash waits for. A site that has lists gets the
    engine imported soon after the start instead (``warm``), in a thread: else the first
    post that each process takes waits for the import."""

    def __init__(self, reloader: Reloader) -> None:
        self.reloader = reloader
        self.inject: Callable[[Envelope, bytes], Awaitable[str]] | None = None
        self.runner: QueueRunner | None = None  # paces big fan-outs (lists.engine)
        self._engine: ListEngine | None = None
        self._renderer: Renderer | None = None

    async def warm(self, delay: float = WARM_AFTER) -> None:
        """Import the engine ``delay`` seconds from now if the site has any list."""
        await asyncio.sleep(delay)
        if self._engine is not None or not len(self.reloader.current.resolver.lists):
            return
        try:
            for module in LIST_ENGINE_MODULES:
                if module not in sys.modules:  # else imported before the fork
                    await asyncio.to_thread(importlib.import_module, module)
        except Exception:  # the first list message imports it again, and says why
            log.exception("importing the list engine failed")

    def engine(self) -> ListEngine:
        if self._engine is None:
            from postroom.lists.engine import ListEngine

            assert self.inject is not None
            self._engine = ListEngine(lambda: self.reloader.current, self.inject,
                                      web_base=self.reloader.current.site.profile.web.base_url,
                                      runner=self.runner)
        return self._engine

    async def handle(self, envelope: Envelope, message: bytes, list_address: str,
                     rcpt: str) -> None:
        await self.engine().handle(envelope, message, list_address, rcpt)

    def render(self, envelope: Envelope, message: bytes) -> Render:
        if self._renderer is None:
            from postroom.lists.fanout import KIND, Renderer

            assert KIND == LIST_POST
            self._renderer = Renderer(lambda: self.reloader.current.site,
                                      web_base=self.reloader.current.site.profile.web.base_url)
        return self._renderer(envelope, message)


class DeliveryService:
    name = "delivery"

    def __init__(self, reloader: Reloader, *, scan: bool = True) -> None:
        site = reloader.current.site
        self.spool = Spool(site.queue_dir)
        if scan:
            self.spool.recover()
        self.lists = LazyLists(reloader)
        self.runner = QueueRunner(reloader, self.spool, {}, scan=scan,
                                  renderers={LIST_POST: self.lists.render})
        self.lists.inject = self.runner.inject
        self.lists.runner = self.runner
        reloader.on_lists.append(self._lists_changed)
        self.runner.couriers = couriers_for(site, list_handler=self.lists.handle)
        self.task: asyncio.Task[None] | None = None
        self._retired: list[asyncio.Task[None]] = []
        self._warming: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.ensure_future(self.runner.run())
        self._warming = asyncio.ensure_future(self.lists.warm())

    async def stop(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
        await self.runner.stop()
        if self.task is not None:
            await self.task
        await asyncio.gather(*self._retired, return_exceptions=True)
        await aclose_all(self.runner.couriers)
        await self.spool.aclose()

    def _lists_changed(self) -> None:
        """The first list may be new: warm the engine now (in a running server only)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self.task is not None and (self._warming is None or self._warming.done()):
            self._warming = loop.create_task(self.lists.warm(0.0))

    def reload(self, old: Runtime, new: Runtime) -> None:
        self.runner.reload()
        self._lists_changed()
        if any(k.startswith(_COURIER_SECTIONS) for k in changed_keys(old.site, new.site)):
            retired, self.runner.couriers = self.runner.couriers, couriers_for(
                new.site, list_handler=self.lists.handle)
            self._retired.append(asyncio.ensure_future(self._close_later(retired)))

    async def _close_later(self, couriers: dict[str, Courier]) -> None:
        """Close the old couriers once the jobs started with them are done."""
        busy = list(self.runner.inflight.values())
        if busy:
            await asyncio.gather(*busy, return_exceptions=True)
        await aclose_all(couriers)


class IntakeService:
    name = "intake"

    def __init__(self, reloader: Reloader, sockets: list[tuple[Listener, socket.socket]],
                 delivery: DeliveryService) -> None:
        self.intake = Intake(reloader, sockets, runner=delivery.runner)

    async def start(self) -> None:
        await self.intake.start()

    async def stop(self) -> None:
        await self.intake.drain()

    def reload(self, old: Runtime, new: Runtime) -> None:
        self.intake.reconfigure()


class ControlService:
    name = "control"

    def __init__(self, reloader: Reloader, commands: dict[str, control.Command]) -> None:
        self.state_dir = reloader.current.site.state_dir
        self.commands = commands
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await control.serve(self.state_dir, self.commands)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def reload(self, old: Runtime, new: Runtime) -> None:
        return None
