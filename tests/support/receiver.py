"""A real HTTP webhook receiver on 127.0.0.1 that records what it gets and answers as scripted."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Answer = int | tuple[int, dict[str, str]]


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    path: str
    at: float  # time.monotonic() on arrival


@dataclass(kw_only=True)
class Receiver:
    """Answers with the scripted answers in order (then `default`), recording every request.

    `delay_s` slows every answer down, to keep work in flight when a test kills the sender; `reply` is every
    answer's body (e.g. Slack's `ok`).
    """

    default: Answer = 204
    reply: bytes = b""
    scripted: deque[Answer] = field(default_factory=deque)
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _address: tuple[Any, ...] = ("127.0.0.1", 0)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks"

    def ids(self) -> list[str]:
        return [message.headers["webhook-id"] for message in self.received]

    def script(self, *answers: Answer) -> None:
        self.scripted.extend(answers)

    def _answer(self, received: Received) -> Answer:
        with self._lock:
            self.received.append(received)
            return self.scripted.popleft() if self.scripted else self.default

    def __enter__(self) -> Receiver:
        self._serve(("127.0.0.1", 0))
        return self

    def down(self) -> None:
        """Stop answering: connections are refused until `up`."""
        assert self._server is not None
        self._address = self._server.server_address[:2]
        self._server.shutdown()
        self._server.server_close()

    def up(self) -> None:
        """Answer again, on the same address."""
        self._serve(self._address)

    def _serve(self, address: tuple[Any, ...]) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request (kill -9): incomplete, not received
                    self.close_connection = True
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = receiver._answer(Received(headers, body, self.path, time.monotonic()))
                status, extra = answer if isinstance(answer, tuple) else (answer, {})
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(receiver.reply)))
                self.end_headers()
                self.wfile.write(receiver.reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((address[0], address[1]), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
