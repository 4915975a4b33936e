"""A TCP proxy on 127.0.0.1 in front of one server, for the fault tests: it passes
traffic, refuses connections, or black-holes them (accepts and reads, forwards nothing),
and can be switched between the three while clients are connected."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Literal

Mode = Literal["pass", "refuse", "blackhole"]
_CHUNK = 64 * 1024


class FaultProxy:
    """Listens on a port of its own; ``mode`` says what happens to traffic, now."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0  # connections accepted so far: a client has got this far

    async def start(self) -> FaultProxy:
        await self._listen()
        return self

    async def set(self, mode: Mode) -> None:
        """Switch: ``refuse`` stops listening (connections are refused) and resets the
        open ones; ``blackhole`` holds every byte of the open ones and of new ones;
        ``pass`` forwards again (what was held is dropped, as a lost network drops it)."""
        self.mode = mode
        if mode == "refuse":
            await self._unlisten()
        elif self._server is None:
            await self._listen()

    async def stop(self) -> None:
        for task in list(self._links):
            task.cancel()
        await self._unlisten()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _unlisten(self) -> None:
        """Stop listening and reset the open connections. The resets come before
        ``wait_closed``: since Python 3.12.1 it waits for the server's connections."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            _reset(writer)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            if self.mode == "blackhole":
                await _swallow(reader)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self._target)
            except OSError:
                return
            self._writers.add(up_writer)
            links = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            self._links.update(links)
            try:
                await asyncio.wait(links, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for link in links:
                    link.cancel()
                    self._links.discard(link)
                self._writers.discard(up_writer)
                _reset(up_writer)
        finally:
            self._writers.discard(writer)
            _reset(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(_CHUNK):
                if self.mode == "blackhole":
                    continue  # read, and forward nothing
                writer.write(data)
                await writer.drain()


async def _swallow(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError):
        while await reader.read(_CHUNK):
            pass


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a reset, as a peer that went away does."""
    with contextlib.suppress(OSError):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
