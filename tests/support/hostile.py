"""A webhook receiver on 127.0.0.1 that answers with raw bytes as scripted: any status line, any headers,
any body, a byte at a time, or far more than anyone should read. It records each request it reads whole."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from types import TracebackType

from tests.support.receiver import Received

CHUNK = 64 * 1024


@dataclass(kw_only=True, frozen=True)
class Answer:
    status: bytes = b"200"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    byte_delay_s: float = 0.0
    """Pause before each byte of the whole answer (status line, headers, body)."""
    extra_zeros: int = 0
    """Zero bytes sent after `body` as fast as the reader takes them (content-length counts them)."""

    def head(self) -> bytes:
        lines = [b"HTTP/1.1 " + self.status + b" X", b"connection: close"]
        lines += [name + b": " + value for name, value in self.headers]
        lines.append(b"content-length: " + str(len(self.body) + self.extra_zeros).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass(kw_only=True)
class HostileReceiver:
    answer: Answer = field(default_factory=Answer)
    more: tuple[Answer, ...] = ()
    """Further answers: the n-th request gets `(answer, *more)[n % (1 + len(more))]`."""
    received: list[Received] = field(default_factory=list)
    sent_bytes: int = 0
    peak: int = 0
    """The most requests it was answering at once."""
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/hooks"

    def ids(self) -> list[str]:
        return [message.headers["webhook-id"] for message in self.received]

    async def __aenter__(self) -> HostileReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.peak = max(self.peak, len(self._handlers))
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            answers = (self.answer, *self.more)
            answer = answers[len(self.received) % len(answers)]
            self.received.append(Received(headers, body, lines[0].split(" ")[1], time.monotonic()))
            await self._answer(reader, writer, answer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Answer) -> None:
        data = answer.head() + answer.body
        if answer.byte_delay_s:
            for n in range(len(data)):
                with contextlib.suppress(TimeoutError):  # the pause; the sender hanging up ends it at once
                    if await asyncio.wait_for(reader.read(1), answer.byte_delay_s) == b"":
                        raise ConnectionResetError("the sender went away")
                await self._send(writer, data[n : n + 1])
        else:
            await self._send(writer, data)
        zeros, left = bytes(CHUNK), answer.extra_zeros
        while left > 0:
            await self._send(writer, zeros[: min(CHUNK, left)])
            left -= CHUNK

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if writer.is_closing():
            raise ConnectionResetError("the reader went away")
        writer.write(data)
        await writer.drain()
        self.sent_bytes += len(data)
