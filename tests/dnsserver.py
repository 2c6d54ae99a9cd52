"""A small authoritative DNS server for tests (maddy's ``t.DNS``): UDP and TCP on
127.0.0.1, port 0, built with dnspython, running in the test's event loop.

    dns = await DnsServer({
        "example.test": {"MX": [(10, "mx1.example.test"), (20, "mx2.example.test")]},
        "mx1.example.test": {"A": ["127.0.0.1"]},
        "null.test": {"MX": [(0, ".")]},
    }).start()
    ... nameservers = [dns.nameserver] ...
    await dns.stop()

A name not in the zone is NXDOMAIN; a known name without the asked type is an empty
NOERROR answer. Records are answered in the order given (never shuffled). ``servfail``
(a set of names, ``"*"`` for all) answers SERVFAIL; ``drop`` never answers (a timeout).
``queries`` records ``(name, type)`` in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Zone = dict[str, dict[str, list[Any]]]


def _key(name: str) -> str:
    return name.lower().rstrip(".")


def _absolute(name: str) -> str:
    return "." if name in (".", "") else name.rstrip(".") + "."


def _rdata_text(rdtype: str, record: Any) -> str:
    if rdtype == "MX" and isinstance(record, tuple):
        preference, exchange = record
        return f"{preference} {_absolute(exchange)}"
    if rdtype in ("CNAME", "NS", "PTR"):
        return _absolute(str(record))
    return str(record)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: Any = None  # a datagram transport (not a DatagramTransport subclass)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class DnsServer:
    def __init__(self, zone: Zone | None = None, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.zone: Zone = {}
        for name, records in (zone or {}).items():
            for rdtype, values in records.items():
                self.set(name, rdtype, values)
        self.servfail: set[str] = set()
        self.drop: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self._udp: Any = None
        self._tcp: asyncio.Server | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()

    @property
    def nameserver(self) -> str:
        """The ``host:port`` form for ``[dns] nameservers``."""
        return f"{self.host}:{self.port}"

    def set(self, name: str, rdtype: str, values: list[Any]) -> None:
        self.zone.setdefault(_key(name), {})[rdtype.upper()] = list(values)

    def remove(self, name: str) -> None:
        self.zone.pop(_key(name), None)

    # -- answering ------------------------------------------------------------------------

    def answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        name = _key(question.name.to_text())
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if name in self.drop or "*" in self.drop:
            return None
        if name in self.servfail or "*" in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        node = self.zone.get(name)
        if node is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        values = node.get(rdtype, [])
        if values:
            response.answer.append(dns.rrset.from_text_list(
                question.name, 60, dns.rdataclass.IN, rdtype,
                [_rdata_text(rdtype, v) for v in values]))
        # records in zone order, not shuffled as dnspython renders by default, so tests can
        # tell the client's own shuffling from the server's
        return response.to_wire(want_shuffle=False)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        for _ in range(20):  # UDP on port 0, then TCP on the same port (retry if taken)
            transport, _proto = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self.host, 0))
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._tcp_client, self.host, port)
            except OSError:
                transport.close()
                continue
            self._udp = transport
            self.port = port
            return self
        raise RuntimeError("could not bind UDP and TCP on one port")

    async def _tcp_client(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tcp_tasks.add(task)
        try:
            while True:
                head = await reader.readexactly(2)
                wire = await reader.readexactly(struct.unpack("!H", head)[0])
                reply = self.answer(wire)
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._tcp_tasks.discard(task)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._tcp_tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> DnsServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
