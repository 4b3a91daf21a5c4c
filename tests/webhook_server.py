"""A real HTTP server on 127.0.0.1 that stands in for a chat webhook, for the tests.

It records every request (path, headers, JSON body) and answers as told: ``ok`` (200),
``fail`` (500 with a reason in the body), or ``hang`` (holds the connection, answering
nothing, until the test ends).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes


class WebhookServer:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[Request] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server._lock:
                    server.requests.append(
                        Request(self.path, dict(self.headers.items()), json.loads(raw), raw)
                    )
                if server.mode == "hang":
                    server.release.wait()
                    return
                code, reply = (200, b"ok") if server.mode == "ok" else (500, b"chat is down\n")
                self.send_response(code)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.requests]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
