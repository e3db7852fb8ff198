"""`nomadctl exec ALLOC [CMD...]`: a command in a task, through Nomad's exec websocket.

The protocol is the Nomad CLI's (api/allocations_exec.go): connect to
/v1/client/allocation/<id>/exec?task=&command=<JSON array>&tty= with the token in X-Nomad-Token (no
`ws_handshake` frame, which only browsers need: command/agent/websockets.go readWsHandshake); send
stdin as {"stdin": {"data": base64}}, its end as {"stdin": {"close": true}}, the terminal's size as
{"tty_size": {"height", "width"}} and a {} heartbeat every 10 s; read {"stdout"|"stderr": {"data"}}
until {"exited": true, "result": {"exit_code"}} (exit_code omitted when 0: plugins/drivers/proto/
driver.pb.go ExitResult). Nomad reports a refusal after the upgrade, as a close frame whose reason is
the error (command/agent/alloc_endpoint.go execStreamHandleError).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import ssl
import termios
import threading
import tty
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import websocket

from scripts.nomadctl.api import EXEC, PERMISSION_DENIED, TOKEN_NOT_FOUND, NomadApi
from scripts.nomadctl.errors import Failure
from scripts.nomadctl.lookup import choose_task, resolve_alloc
from scripts.nomadctl.settings import Connection

HEARTBEAT_SECONDS = 10.0
"""api/allocations_exec.go heartbeatInterval."""
READ_SIZE = 2048
"""What the Nomad CLI reads from stdin at a time (api/allocations_exec.go startTransmit)."""
NORMAL_CLOSURE = 1000


def exec_url(connection: Connection, alloc_id: str, task: str, command: list[str], tty: bool) -> str:
    scheme, rest = connection.address.split("://", 1)
    query = urllib.parse.urlencode(
        {
            "task": task,
            "command": json.dumps(command),
            "tty": "true" if tty else "false",
            "namespace": connection.namespace,
        }
    )
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/v1/client/allocation/{alloc_id}/exec?{query}"


def tls_options(connection: Connection) -> dict[str, Any]:
    """The same trust as the HTTP calls: the CA file (or the system's), a client certificate if set."""
    context = ssl.create_default_context(cafile=connection.ca_file)
    if connection.client_cert and connection.client_key:
        context.load_cert_chain(connection.client_cert, connection.client_key)
    options: dict[str, Any] = {"context": context}
    if connection.server_name:
        options["server_hostname"] = connection.server_name
    return options


def connect(api: NomadApi, url: str) -> websocket.WebSocket:
    token = api.connection.token
    try:
        ws = websocket.create_connection(
            url,
            header=[f"X-Nomad-Token: {token}"] if token else [],
            sslopt=tls_options(api.connection),
            timeout=api.timeout,
        )
    except websocket.WebSocketBadStatusException as error:
        body = (error.resp_body or b"").decode(errors="replace").strip()
        if body.endswith((PERMISSION_DENIED, TOKEN_NOT_FOUND)):
            raise api.refused(EXEC) from None
        raise Failure(
            f"Nomad at {api.connection.address} refused the exec session ({error.status_code}): {body}"
        ) from None
    except (OSError, websocket.WebSocketException) as error:
        raise api.transport_failure(error) from None
    ws.settimeout(None)  # an interactive session may sit idle for as long as the user likes
    return ws


class ExecSession:
    """One exec session on a connected websocket: stdin up, stdout and stderr down, the exit code back."""

    def __init__(
        self,
        ws: websocket.WebSocket,
        api: NomadApi,
        stdin_fd: int,
        stdout: BinaryIO,
        stderr: BinaryIO,
        terminal_size: Callable[[], tuple[int, int]] | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ):
        self._ws, self._api = ws, api
        self._stdin_fd, self._stdout, self._stderr = stdin_fd, stdout, stderr
        self._terminal_size = terminal_size
        self._heartbeat_seconds = heartbeat_seconds
        self._send_lock = threading.Lock()
        self._done = threading.Event()

    def send(self, frame: dict[str, Any]) -> None:
        # websocket-client frames are not safe to interleave: stdin, resizes and heartbeats share the lock.
        with self._send_lock:
            self._ws.send(json.dumps(frame))

    def send_size(self) -> None:
        if self._terminal_size:
            height, width = self._terminal_size()
            self.send({"tty_size": {"height": height, "width": width}})

    def _pump_stdin(self) -> None:
        with contextlib.suppress(OSError, websocket.WebSocketException):
            while not self._done.is_set():
                data = os.read(self._stdin_fd, READ_SIZE)
                if not data:
                    self.send({"stdin": {"close": True}})
                    return
                self.send({"stdin": {"data": base64.b64encode(data).decode()}})

    def _heartbeat(self) -> None:
        with contextlib.suppress(OSError, websocket.WebSocketException):
            while not self._done.wait(self._heartbeat_seconds):
                self.send({})

    def run(self) -> int:
        self.send_size()
        for target in (self._pump_stdin, self._heartbeat):
            threading.Thread(target=target, daemon=True).start()
        try:
            return self._receive()
        finally:
            self._done.set()
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self._ws.close()

    def _receive(self) -> int:
        while True:
            try:
                opcode, data = self._ws.recv_data()
            except (OSError, websocket.WebSocketException):
                raise Failure("the connection to Nomad closed before the command's exit code arrived") from None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise self._closed(data)
            frame = json.loads(data)
            for name, stream in (("stdout", self._stdout), ("stderr", self._stderr)):
                if data_b64 := (frame.get(name) or {}).get("data"):
                    stream.write(base64.b64decode(data_b64))
                    stream.flush()
            if frame.get("exited"):
                return int((frame.get("result") or {}).get("exit_code") or 0)
            # anything else ({} heartbeats, a stream's close) needs nothing

    def _closed(self, data: bytes) -> Failure:
        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else NORMAL_CLOSURE
        reason = data[2:].decode(errors="replace")
        if reason.endswith((PERMISSION_DENIED, TOKEN_NOT_FOUND)):
            return self._api.refused(EXEC)
        if code == NORMAL_CLOSURE and not reason:
            return Failure("Nomad closed the exec session before the command's exit code arrived")
        return Failure(f"Nomad ended the exec session: {reason or 'no reason given'} (websocket close {code})")


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Keys go to the remote shell as typed (^C included); the terminal is restored however it ends."""
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def resizes_sent(session: ExecSession) -> Iterator[None]:
    """Each SIGWINCH (the terminal was resized) sends the new size, from a thread of its own: the
    handler may interrupt the main thread while it holds the send lock."""

    def resized(_signum: int, _frame: Any) -> None:
        threading.Thread(target=session.send_size, daemon=True).start()

    previous = signal.signal(signal.SIGWINCH, resized)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def terminal_size(fd: int) -> Callable[[], tuple[int, int]]:
    def size() -> tuple[int, int]:
        columns, lines = os.get_terminal_size(fd)
        return lines, columns

    return size


def run_exec(
    api: NomadApi,
    alloc_prefix: str,
    command: list[str],
    task: str | None,
    stdin_fd: int,
    stdout: BinaryIO,
    stderr: BinaryIO,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> int:
    alloc = resolve_alloc(api, alloc_prefix)
    job = alloc.get("Job") or {"ID": alloc.get("JobID", "?")}
    task = choose_task(job, alloc, task)
    interactive = os.isatty(stdin_fd)
    ws = connect(api, exec_url(api.connection, alloc["ID"], task, command, interactive))
    size = terminal_size(stdin_fd) if interactive else None
    session = ExecSession(ws, api, stdin_fd, stdout, stderr, size, heartbeat_seconds)
    with contextlib.ExitStack() as stack:
        if interactive:
            stack.enter_context(raw_terminal(stdin_fd))
            stack.enter_context(resizes_sent(session))
        return session.run()
