"""A local HTTPS server that answers nomadctl as a Nomad 2.0 server does, from tests/upstream_nomadctl.py.

It holds a small cluster state (jobs, allocations, their stats and logs, the tokens and the namespaces
each may read) and answers the job, allocation, stats, log and token endpoints from it, with Nomad's
ACL answers for a missing, unknown or insufficient token. Logs are sent chunk by chunk (chunked
transfer encoding, as Nomad's flushing writer does), and the exec websocket is served on the same
port by the `websockets` package's sans-I/O protocol, to a handler the test gives.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import queue
import socket
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import upstream_nomadctl as nomad
from fake_https import serve_https
from upstream import SOURCES, Answer
from websockets.frames import Opcode
from websockets.server import ServerProtocol

DEVELOPER_TOKEN = "dev-0000-secret"
"""A token whose policy allows the apps namespace (the stack's nomadDeveloperToken)."""
OTHER_TOKEN = "ops-0000-secret"
"""A known token that may read the default namespace only."""


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Stream:
    """A 200 answer sent chunk by chunk, each as soon as the iterable yields it."""

    chunks: Iterable[bytes]
    source: str
    content_type: str = "text/plain"


class FakeWebsocket:
    """The server's side of one exec websocket."""

    def __init__(self, protocol: ServerProtocol, sock: socket.socket):
        self._protocol, self._sock = protocol, sock
        self._events: list[Any] = []

    def _flush(self) -> None:
        for data in self._protocol.data_to_send():
            if data:
                self._sock.sendall(data)

    def recv_json(self) -> dict[str, Any]:
        """The client's next text frame, parsed."""
        while True:
            while self._events:
                frame = self._events.pop(0)
                if frame.opcode is Opcode.TEXT:
                    return json.loads(frame.data)
                if frame.opcode is Opcode.CLOSE:
                    raise EOFError("the client closed the websocket")
            data = self._sock.recv(65536)
            if not data:
                raise EOFError("the client went away")
            self._protocol.receive_data(data)
            self._events += self._protocol.events_received()
            self._flush()  # pongs, close replies

    def send_json(self, frame: dict[str, Any]) -> None:
        self._protocol.send_text(json.dumps(frame).encode())
        self._flush()

    def drain(self, seconds: float = 5.0) -> None:
        """Reads the client's frames until its close reply or its end, as Nomad's reader goroutine does
        (command/agent/alloc_endpoint.go forwardExecInput reads the websocket until it fails): closing
        with the client's frames unread would reset the connection and lose the frames sent before."""
        self._sock.settimeout(seconds)
        with contextlib.suppress(EOFError, OSError):
            while True:
                self.recv_json()

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._protocol.send_close(code, reason)
        self._flush()


ExecHandler = Callable[[FakeWebsocket, Seen], None]


@dataclass
class FakeNomad:
    pki: Path
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    allocs: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    logs: dict[tuple[str, str, str], Callable[[], Iterable[bytes]]] = field(default_factory=dict)
    tokens: dict[str, tuple[str, set[str]]] = field(
        default_factory=lambda: {DEVELOPER_TOKEN: ("developer", {"apps"}), OTHER_TOKEN: ("ops", {"default"})}
    )
    exec_handler: ExecHandler | None = None
    requests: list[Seen] = field(default_factory=list)
    cert: str = "server"

    def __post_init__(self) -> None:
        self.exec_errors: queue.Queue[BaseException] = queue.Queue()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                seen = Seen(
                    "GET", url.path, dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)), dict(self.headers)
                )
                fake.requests.append(seen)
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    self._websocket(seen)
                    return
                answer = fake.answer(seen)
                if isinstance(answer, Stream):
                    self._stream(answer)
                    return
                raw = answer.body if answer.content_type.startswith("text/") else json.dumps(answer.body)
                payload = raw.encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, answer: Stream) -> None:
                self.send_response(200)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in answer.chunks:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _websocket(self, seen: Seen) -> None:
                self.close_connection = True
                protocol = ServerProtocol()
                # http.server has read the handshake; the protocol parses it again from its bytes, so its
                # parser moves on to frames (one built from a Request object would still wait for one).
                head = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
                protocol.receive_data(f"GET {self.path} HTTP/1.1\r\n{head}\r\n".encode())
                (request,) = protocol.events_received()
                protocol.send_response(protocol.accept(request))
                ws = FakeWebsocket(protocol, self.connection)
                ws._flush()
                try:
                    fake.exec_session(ws, seen)
                except BaseException as error:  # handed to the test, which would not see a thread's error
                    fake.exec_errors.put(error)
                ws.drain()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        serve_https(self.server, self.pki, self.cert)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- answers ------------------------------------------------------------------------------------
    def _denied(self, seen: Seen, namespace: str | None) -> bool:
        """Nomad's ACL check: a known token whose policy covers the namespace (or the alloc's)."""
        known = self.tokens.get(seen.headers.get("X-Nomad-Token", ""))
        return known is None or (namespace is not None and namespace not in known[1])

    def answer(self, seen: Seen) -> Answer | Stream:
        path, namespace = seen.path, seen.query.get("namespace", "default")
        if path == "/v1/acl/token/self":
            known = self.tokens.get(seen.headers.get("X-Nomad-Token", ""))
            return nomad.token_self(known[0], [f"{known[0]}-policy"]) if known else nomad.token_unknown()
        if path.startswith("/v1/client/fs/logs/"):
            return self._logs(seen, path.removeprefix("/v1/client/fs/logs/"))
        if self._denied(seen, self._namespace_of(path) or namespace):
            return nomad.permission_denied()
        if path == "/v1/jobs":
            return nomad.jobs(sorted(j for j, job in self.jobs.items() if job["Namespace"] == namespace))
        if path.startswith("/v1/job/"):
            job_id, _, rest = path.removeprefix("/v1/job/").partition("/")
            job = self.jobs.get(job_id)
            if job is None or job["Namespace"] != namespace:
                return nomad.job_not_found()
            if rest == "allocations":
                return nomad.job_allocations([a for a in self.allocs if a["JobID"] == job_id])
            return nomad.job(job_id, job["groups"], job["Status"], job["Namespace"])
        if path == "/v1/allocations":
            prefix = seen.query.get("prefix", "")
            return nomad.allocations([a for a in self.allocs if a["ID"].startswith(prefix)])
        if path.startswith("/v1/allocation/"):
            alloc = self._alloc(path.removeprefix("/v1/allocation/"))
            return nomad.allocation(alloc) if alloc else nomad.allocation_not_found()
        if path.startswith("/v1/client/allocation/") and path.endswith("/stats"):
            alloc_id = path.split("/")[4]
            return nomad.allocation_stats(self.stats[alloc_id]) if alloc_id in self.stats else nomad.no_path_to_node()
        return Answer(404, f"no route GET {path}", "tests/fake_nomad.py: not in hashicorp/nomad's API", "text/plain")

    def _alloc(self, alloc_id: str) -> dict[str, Any] | None:
        return next((a for a in self.allocs if a["ID"] == alloc_id), None)

    def _namespace_of(self, path: str) -> str | None:
        """Allocation endpoints check the allocation's own namespace, not the query's."""
        for prefix in ("/v1/allocation/", "/v1/client/allocation/"):
            if path.startswith(prefix):
                alloc = self._alloc(path.removeprefix(prefix).split("/")[0])
                return alloc["Namespace"] if alloc else None
        return None

    def _logs(self, seen: Seen, alloc_id: str) -> Answer | Stream:
        alloc = self._alloc(alloc_id)
        if self._denied(seen, alloc["Namespace"] if alloc else None):
            return nomad.logs_denied()
        chunks = self.logs[(alloc_id, seen.query["task"], seen.query["type"])]
        return Stream(chunks(), SOURCES["log_text"])

    def exec_session(self, ws: FakeWebsocket, seen: Seen) -> None:
        alloc = self._alloc(seen.path.split("/")[4])
        if self._denied(seen, alloc["Namespace"] if alloc else None):
            # nomad/client_alloc_endpoint.go exec: no code -> 500 -> close 1011 (EXEC_SOURCES["refusal"])
            ws.close(1011, "Permission denied")
            return
        assert self.exec_handler, "the test set no exec handler"
        self.exec_handler(ws, seen)


def allocation(
    alloc_id: str,
    job_id: str,
    group: str,
    tasks: dict[str, dict[str, Any]],
    status: str = "running",
    node: str = "client-0",
    created: int = 0,
    namespace: str = "apps",
    job: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole Allocation; tasks: name -> {"state", "started", "memory_mb", "memory_max_mb"}."""
    return {
        "ID": alloc_id,
        "Name": f"{job_id}.{group}[0]",
        "Namespace": namespace,
        "NodeID": f"node-{node}",
        "NodeName": node,
        "JobID": job_id,
        "TaskGroup": group,
        "ClientStatus": status,
        "DesiredStatus": "run",
        "CreateTime": created,
        "TaskStates": {
            name: nomad.task_state(t.get("state", "running"), t.get("started", nomad.ZERO_TIME))
            for name, t in tasks.items()
        },
        "AllocatedResources": {
            "Tasks": {
                name: {
                    "Cpu": {"CpuShares": 100},
                    "Memory": {"MemoryMB": t.get("memory_mb", 256), "MemoryMaxMB": t.get("memory_max_mb", 0)},
                }
                for name, t in tasks.items()
            }
        },
        "Job": job,
    }
