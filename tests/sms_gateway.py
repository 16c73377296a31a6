"""A stand-in for an SMS gateway's HTTP API (the kind SMSAPI, SerwerSMS or a GSM modem's web
service offer): a real HTTP server on a free loopback port that takes a page's request as the
gateway would — the rendered body, the bearer token, the signature, the idempotency key — and
keeps it. It sends no SMS; it is what dyzur talks to in tests, and it can be stopped and started
again on the same port (a gateway that is down) or answer from a script (busy, refusing)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SmsGatewayServer:
    """Keeps every request (headers, body) and the messages it took (first 2xx per
    Idempotency-Key, as a gateway that drops repeats would); answers from ``script`` first
    (status, headers), then 200 with a message id."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.taken: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> the JSON body
        self.script: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _take(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                headers[":method"] = self.command
                headers[":path"] = self.path
                with gateway.lock:
                    status, extra = gateway.script.pop(0) if gateway.script else (200, {})
                    gateway.requests.append((headers, body, status))
                    if 200 <= status < 300:
                        try:
                            message = json.loads(body)
                        except ValueError:
                            message = {"raw": body.decode("utf-8", "replace")}
                        gateway.taken.setdefault(headers.get("idempotency-key", ""), message)
                    number = len(gateway.taken)
                answer = json.dumps({"id": f"sms-{number}", "status": "queued"}).encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = _take
            do_PUT = _take

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def up(self) -> None:
        """Listen (on the same port as before, once it had one)."""
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening: connections are refused until ``up``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/sms"

    def messages(self) -> list[dict[str, Any]]:
        """The messages taken, in arrival order."""
        with self.lock:
            return list(self.taken.values())
