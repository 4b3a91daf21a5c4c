"""Delivery of notification messages to webhooks, in a thread of its own.

The operator must never wait for a chat server: messages are queued and POSTed from a
separate thread and event loop (a terminal prompt blocks the run's own loop, and a gate
is exactly when a "waiting" message must go out). Each webhook has one queue, so its
messages arrive in order; each attempt has a timeout, failures that may pass (a timeout,
a refused connection, HTTP 408/429/5xx) are retried with a growing delay, and every
attempt's outcome is handed to ``report`` to be recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from runbook import __version__

FIRST_RETRY_DELAY = 0.5
"""Seconds before the first retry; each later one waits twice as long."""
STOP_GRACE = 5.0
"""How long stopping may take beyond the wait it was given (a last report, the thread)."""
ERROR_SNIPPET = 200
"""How much of a failed response's body to keep as the reason (Slack says why there)."""


@dataclass(frozen=True)
class Target:
    """A webhook ready to send to: URL and headers expanded (secret: never recorded)."""

    index: int
    """1-based position under ``notify:``, which the transcript names."""
    url: str
    origin: str
    """``scheme://host:port``: what the record and the screen show."""
    events: frozenset[str]
    headers: tuple[tuple[str, str], ...]
    timeout: float
    retries: int


@dataclass(frozen=True)
class Attempt:
    """The outcome of one try to deliver one message to one webhook."""

    hook: int
    to: str
    message: int
    event: str
    attempt: int
    result: str
    """``delivered``, ``retry`` (another attempt follows), ``failed``, or ``abandoned``
    (the run ended first: ``attempt`` 0 if it was never tried)."""
    status: int | None = None
    error: str | None = None
    seconds: float = 0.0


class Rejected(Exception):
    """The webhook answered, and not with 2xx; ``retry`` says whether it may pass."""

    def __init__(self, status: int, message: str, retry: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retry = retry


async def post(url: str, headers: Sequence[tuple[str, str]], data: bytes, timeout: float) -> int:
    """POST ``data`` as JSON over HTTP/1.1; the status, or :class:`Rejected` / OSError."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = [
        f"POST {target} HTTP/1.1",
        f"Host: {parts.netloc.rpartition('@')[2]}",
        f"User-Agent: runbook/{__version__}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl.create_default_context() if secure else None
        )
        try:
            writer.write("\r\n".join(request).encode() + b"\r\n\r\n" + data)
            await writer.drain()
            status, reason, length = await _response_head(reader)
            if 200 <= status < 300:
                return status
            snippet = b""
            if length:
                try:
                    snippet = await reader.readexactly(min(length, ERROR_SNIPPET))
                except asyncio.IncompleteReadError as e:  # the reason, as far as it came
                    snippet = e.partial
            why = snippet.decode(errors="replace").strip().splitlines()
            message = f"HTTP {status} {reason}".strip() + (f": {why[0]}" if why else "")
            if 300 <= status < 400:
                message += " (redirects are not followed)"
            raise Rejected(status, message, retry=status in (408, 429) or status >= 500)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


async def _response_head(reader: asyncio.StreamReader) -> tuple[int, str, int]:
    """Status code, reason and Content-Length (0 if not given) of a response."""
    line = (await reader.readline()).decode("latin-1").strip()
    proto, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not proto.startswith("HTTP/") or not code.isdigit():
        raise OSError(f"not an HTTP response: {line[:80]!r}")
    length = 0
    while True:
        header = (await reader.readline()).decode("latin-1").strip()
        if not header:
            break
        name, _, value = header.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    return int(code), reason, length


def scrub(error: str, url: str) -> str:
    """``error`` without the URL's path and query: a server that echoes the request
    (``Cannot POST /services/T0/B0/XyZ``) must not put a webhook's credential on record."""
    parts = urlsplit(url)
    for secret in (f"{parts.path}?{parts.query}", parts.query, parts.path):
        if len(secret) > 1:
            error = error.replace(secret, "/…")
    return error


def describe_error(e: BaseException, timeout: float) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(e, ssl.SSLError):
        return f"TLS: {e.reason or e}"
    if isinstance(e, OSError):
        return e.strerror or str(e) or type(e).__name__
    return str(e) or type(e).__name__


class Courier:
    """Sends messages to webhooks from its own thread; ``report`` hears every attempt.

    ``report`` is called in the courier's thread: the caller hands it on to its own loop.
    Nothing here waits without a bound: the end (:meth:`drain`) can be hurried from any
    thread, so a Ctrl-C during the last wait ends it at once.
    """

    def __init__(self, targets: Sequence[Target], report: Callable[[Attempt], None]) -> None:
        self.targets = tuple(targets)
        self._report = report
        self._loop = asyncio.new_event_loop()
        self._queues: dict[int, asyncio.Queue[tuple[int, str, bytes]]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._hurry = asyncio.Event()
        self._lock = threading.Lock()
        self._drained: concurrent.futures.Future[None] | None = None
        self._thread = threading.Thread(target=self._serve, name="runbook-notify", daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        for target in self.targets:
            self._queues[target.index] = asyncio.Queue()
            self._workers.append(self._loop.create_task(self._work(target)))
        self._loop.call_soon(self._started.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def send(self, number: int, event: str, data: bytes) -> None:
        """Queue message ``number`` for every webhook that wants ``event``; returns at once."""
        for target in self.targets:
            if event in target.events:
                queue = self._queues[target.index]
                self._loop.call_soon_threadsafe(queue.put_nowait, (number, event, data))

    def settled(self, wait: float) -> concurrent.futures.Future[bool]:
        """Whether every queued message is settled within ``wait`` seconds; cancelling the
        future stops the wait (nothing else is cancelled)."""

        async def settled() -> bool:
            joins = [asyncio.create_task(q.join()) for q in self._queues.values()]
            try:
                _, pending = await asyncio.wait(joins, timeout=wait)
                return not pending
            finally:
                for task in joins:
                    task.cancel()

        return asyncio.run_coroutine_threadsafe(settled(), self._loop)

    def drain(self, wait: float) -> concurrent.futures.Future[None]:
        """The end: queued messages get up to ``wait`` seconds, the rest is recorded as
        abandoned, the thread stops. Asked again, it is the same end."""
        with self._lock:
            if self._drained is None:
                self._drained = asyncio.run_coroutine_threadsafe(self._drain(wait), self._loop)
            return self._drained

    def close(self, wait: float) -> None:
        """:meth:`drain` and wait for it from a thread that is not the courier's; ``wait``
        0 hurries a drain already under way."""
        if not self._thread.is_alive():
            return
        try:
            done = self.drain(wait)
            if wait == 0:
                self._loop.call_soon_threadsafe(self._hurry.set)
        except RuntimeError:  # the loop is closed already: the drain is over
            pass
        else:
            with contextlib.suppress(Exception):
                done.result(timeout=wait + STOP_GRACE)
        self._thread.join(timeout=STOP_GRACE)

    async def _drain(self, wait: float) -> None:
        try:
            everything: asyncio.Future[Any] = asyncio.gather(
                *(q.join() for q in self._queues.values())
            )
            hurry: asyncio.Future[Any] = asyncio.ensure_future(self._hurry.wait())
            await asyncio.wait({everything, hurry}, timeout=wait, return_when="FIRST_COMPLETED")
            for task in (everything, hurry, *self._workers):
                task.cancel()
            await asyncio.gather(everything, hurry, *self._workers, return_exceptions=True)
            for target in self.targets:
                queue = self._queues[target.index]
                while not queue.empty():
                    number, event, _ = queue.get_nowait()
                    self._report(
                        Attempt(target.index, target.origin, number, event, 0, "abandoned",
                                error="never tried: the run ended first")
                    )  # fmt: skip
        finally:
            self._loop.call_soon(self._loop.stop)

    async def _work(self, target: Target) -> None:
        queue = self._queues[target.index]
        while True:
            number, event, data = await queue.get()
            try:
                await self._deliver(target, number, event, data)
            except Exception:  # only a report that could not be made gets here: the next
                pass  # message to this webhook must still go out
            finally:
                queue.task_done()

    async def _deliver(self, target: Target, number: int, event: str, data: bytes) -> None:
        def report(
            attempt: int,
            result: str,
            started: float,
            status: int | None = None,
            error: str | None = None,
        ) -> None:
            seconds = time.monotonic() - started
            self._report(
                Attempt(target.index, target.origin, number, event, attempt, result,
                        status, error, seconds)
            )  # fmt: skip

        delay, attempt, started, waiting = FIRST_RETRY_DELAY, 0, time.monotonic(), False
        try:
            while True:
                attempt += 1
                started = time.monotonic()
                try:
                    status = await post(target.url, target.headers, data, target.timeout)
                except Rejected as e:
                    error, code, retry = str(e), e.status, e.retry
                except Exception as e:  # any failure of one attempt is that attempt's outcome
                    error, code, retry = describe_error(e, target.timeout), None, True
                else:
                    report(attempt, "delivered", started, status=status)
                    return
                result = "retry" if retry and attempt <= target.retries else "failed"
                report(attempt, result, started, status=code, error=scrub(error, target.url))
                if result == "failed":
                    return
                waiting = True
                await asyncio.sleep(delay)
                waiting = False
                delay *= 2
        except asyncio.CancelledError:
            if waiting:  # between attempts: the next one was never made
                attempt, why = attempt + 1, "never tried: the run ended first"
            else:
                why = "the run ended before the webhook answered"
            report(attempt, "abandoned", started, error=why)
            raise
