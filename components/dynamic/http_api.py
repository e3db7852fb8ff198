"""HTTPS JSON calls to the cluster's APIs, always verified against the cluster CA, and a poll loop
with a deadline and readable progress. Used by the server health gate and the bootstrap steps."""

from __future__ import annotations

import json
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Unreachable(Exception):
    """The API did not answer (refused, timed out, reset): worth waiting for."""


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    """Parsed JSON, the text when it is not JSON, None when empty."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class TlsMaterial:
    ca_pem: str
    client_cert_pem: str | None = None
    client_key_pem: str | None = None
    """A client certificate, for APIs that require one (Consul's verify_incoming)."""


@dataclass
class HttpsApi:
    base_url: str
    """https://host:port"""
    tls: TlsMaterial
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self._context = ssl.create_default_context(cadata=self.tls.ca_pem)
        if self.tls.client_cert_pem:
            # load_cert_chain reads files only; the key lives in a private temp dir for this call.
            with tempfile.TemporaryDirectory() as directory:
                cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
                cert.write_text(self.tls.client_cert_pem)
                key.touch(mode=0o600)
                key.write_text(self.tls.client_key_pem or "")
                self._context.load_cert_chain(cert, key)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """One call; `timeout` overrides the API's for calls that may legitimately block longer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **self.headers, **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=timeout or self.timeout) as response:
                return Response(response.status, _parse(response.read()))
        except urllib.error.HTTPError as error:
            return Response(error.code, _parse(error.read()))
        except urllib.error.URLError as error:
            if isinstance(error.reason, ssl.SSLCertVerificationError):
                raise error.reason from None  # a certificate the cluster CA did not sign will not fix itself
            raise Unreachable(f"{self.base_url}: {error.reason}") from None
        except (OSError, TimeoutError) as error:
            raise Unreachable(f"{self.base_url}: {error}") from None

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return self.request("GET", path, headers=headers)


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


class DeadlineExceeded(Exception):
    pass


class Aborted(Exception):
    """The thing waited for said it will not come (e.g. a node's boot reported FAILED)."""


@dataclass(frozen=True)
class Poller:
    """Calls `attempt` until it reports done, with a deadline; injectable clock for the tests."""

    timeout: float
    interval: float = 5.0
    log: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    abort: Callable[[], str | None] = lambda: None
    """Asked before every attempt: a message ends the wait at once (Aborted), None goes on."""

    def until(self, what: str, attempt: Callable[[], tuple[bool, str]]) -> str:
        """`attempt() -> (done, status)`; an Unreachable API counts as not done. Returns the last status."""
        deadline = self.clock() + self.timeout
        status = "no answer yet"
        while self.clock() < deadline:
            if reason := self.abort():
                raise Aborted(reason)
            try:
                done, status = attempt()
            except Unreachable as error:
                done, status = False, f"no answer ({error})"
            if done:
                return status
            self.log(f"{what}: waiting, {status}")
            self.sleep(self.interval)
        raise DeadlineExceeded(f"{what}: gave up after {int(self.timeout)} s: {status}")
