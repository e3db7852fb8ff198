"""Local HTTPS servers that answer like the cluster's APIs, for the health gate and bootstrap tests.

`make_pki` has `openssl` make a test CA, a server certificate for 127.0.0.1-127.0.0.5, an operator
client certificate, and an impostor server certificate from a stranger CA. `FakeApi` serves routes
over TLS (requiring a client certificate by default, like Consul's verify_incoming) on the loopback
only, and records every request. A route answers with a tests/upstream.py Answer (status, body and
the upstream Content-Type) or, for tests of the transport itself, a plain (status, body).
"""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upstream import JSON, Answer

from components.dynamic.http_api import Poller, TlsMaterial
from scripts.boot_test.pki import ThrowawayCa


def make_pki(directory: Path) -> Path:
    assert shutil.which("openssl"), "openssl is missing (Debian package openssl)"
    ca, stranger = ThrowawayCa(directory), ThrowawayCa(directory, name="stranger-ca")
    server_names = (["server.dc1.consul"], [f"127.0.0.{i}" for i in range(1, 6)])
    ca.issue("server", *server_names)
    stranger.issue("impostor", *server_names)
    ca.issue("operator", [], [], usages=("clientAuth",))
    return directory


def operator_tls(pki: Path, with_client_cert: bool = True) -> TlsMaterial:
    ca = (pki / "ca.pem").read_text()
    if not with_client_cert:
        return TlsMaterial(ca)
    return TlsMaterial(ca, (pki / "operator.pem").read_text(), (pki / "operator.key").read_text())


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    """Without the query string, which is in `query`."""
    headers: dict[str, str]
    body: Any
    client_cert: bool
    query: dict[str, str]


Route = Callable[[Seen], "Answer | tuple[int, Any]"]


def serve_https(
    server: http.server.HTTPServer, pki: Path, cert: str = "server", verify_clients: ssl.VerifyMode = ssl.CERT_NONE
) -> ssl.SSLContext:
    """Serves `server` over TLS with the test PKI's `cert` on a daemon thread (close it with shutdown()
    and server_close()); `verify_clients` asks clients for a certificate of the test CA. Returns a
    client context that trusts the test CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    if verify_clients is not ssl.CERT_NONE:
        context.load_verify_locations(pki / "ca.pem")
        context.verify_mode = verify_clients
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    return ssl.create_default_context(cafile=str(pki / "ca.pem"))


class FakeApi:
    def __init__(
        self, pki: Path, address: str = "127.0.0.1", port: int = 0, cert: str = "server", client_cert: bool = True
    ):
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Seen] = []
        self.down = False
        self.contract_only = False
        """Answer 599 to a route that returns anything but a tests/upstream.py Answer."""
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                seen = Seen(
                    self.command,
                    url.path,
                    dict(self.headers.items()),
                    json.loads(raw) if raw else None,
                    bool(self.connection.getpeercert()),
                    dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
                )
                fake.requests.append(seen)
                if fake.down:  # stands in for an agent that is not listening: no answer at all
                    self.close_connection = True
                    return
                route = fake.routes.get((self.command, url.path))
                answer = route(seen) if route else (404, f"no route {self.command} {url.path}")
                if isinstance(answer, Answer):
                    status, body, content_type = answer.status, answer.body, answer.content_type
                elif fake.contract_only:  # a fake cluster answers only as tests/upstream.py says
                    status, body, content_type = 599, f"not in the contract: {answer!r}", "text/plain"
                else:
                    (status, body), content_type = answer, JSON
                # A text body is sent as it is; anything else as JSON (Nomad's and Consul's 429 health
                # bodies are JSON under a sniffed text/plain type).
                raw = body if content_type.startswith("text/") and isinstance(body, str) else json.dumps(body)
                payload = b"" if body is None else raw.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.address = address
        self.port = self.server.server_address[1]
        self.url = f"https://{address}:{self.port}"
        serve_https(self.server, pki, cert, ssl.CERT_REQUIRED if client_cert else ssl.CERT_OPTIONAL)

    def on(self, method: str, path: str, route: Route | Answer | tuple[int, Any]) -> None:
        """Answer `method path` (any query) with `route(seen)`, or always with a fixed answer."""
        self.routes[(method, path)] = route if callable(route) else (lambda _seen, answer=route: answer)

    def seen(self, method: str, path: str) -> list[Seen]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def instant_poller(timeout: float = 60, time: FakeTime | None = None, logs: list[str] | None = None) -> Poller:
    """A Poller on a FakeTime: it gives up after `timeout` fake seconds, at once."""
    time = time or FakeTime()
    return Poller(timeout, 5, log=(logs if logs is not None else []).append, clock=time.clock, sleep=time.sleep)


class FakeTime:
    """A clock and sleep for Poller: polls advance time instead of waiting."""

    def __init__(self):
        self.now = 0.0
        self.on_sleep: Callable[[], None] | None = None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.on_sleep:
            self.on_sleep()
