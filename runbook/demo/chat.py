"""A stand-in for the team's chat channel: a webhook receiver on 127.0.0.1 for the demo.

An example runbook's ``notify:`` posts to ``$DEPLOYS_WEBHOOK``; the demo points it here,
so the notifications really travel over HTTP and land where the operator can read them:
``chat/deploys.log`` (one line per message, as a channel would show it) and
``chat/deploys.jsonl`` (each message as received).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

MAX_BODY = 1 << 20
PATH = "/hooks/deploys"


class ChatChannel:
    """Accepts ``POST /hooks/deploys`` with a JSON body; anything else gets 404 or 400."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log = directory / "deploys.log"
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        self.log.touch()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{PATH}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                code = await self._receive(reader)
            reply = {200: b"OK", 400: b"Bad Request"}.get(code, b"Not Found")
            head = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n" % (code, reply, len(reply))
            writer.write(head + reply)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _receive(self, reader: asyncio.StreamReader) -> int:
        method, target, _ = (await reader.readline()).decode("latin-1").split(" ", 2)
        length = 0
        while line := (await reader.readline()).strip():
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if method != "POST" or target != PATH:
            return 404
        if not 0 < length <= MAX_BODY:
            return 400
        message = json.loads(await reader.readexactly(length))
        stamp = time.strftime("%H:%M:%S")
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"{stamp}  {message.get('text', '')}\n")
        with (self.directory / "deploys.jsonl").open("a", encoding="utf-8") as raw:
            raw.write(json.dumps(message, ensure_ascii=False) + "\n")
        return 200
