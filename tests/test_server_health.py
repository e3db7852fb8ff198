"""The server health gate against local HTTPS servers that answer like Consul, over mutual TLS.

Certificates come from `openssl` (a test CA, a server certificate for 127.0.0.1 and 127.0.0.2, an
operator client certificate, and a stranger CA's server certificate); nothing leaves the loopback.
"""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from components.server_health import ConsulClient, ServerUnhealthyError, TlsMaterial, wait_until_healthy

TOKEN = "33333333-cccc-4ccc-8ccc-333333333333"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(directory: Path, ca: str, name: str, extensions: str) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=directory)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr", cwd=directory)
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    assert shutil.which("openssl"), "openssl is missing (Debian package openssl)"
    directory = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "stranger-ca"):
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{ca}.key", cwd=directory)
        _openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            f"{ca}.key",
            "-subj",
            f"/CN={ca}",
            "-days",
            "2",
            "-out",
            f"{ca}.pem",
            cwd=directory,
        )
    server_ext = (
        "subjectAltName=DNS:server.dc1.consul,IP:127.0.0.1,IP:127.0.0.2\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    _issue(directory, "ca", "server", server_ext)
    _issue(directory, "stranger-ca", "impostor", server_ext)
    _issue(directory, "ca", "operator", "extendedKeyUsage=clientAuth\n")
    return directory


class FakeConsul:
    """Answers /v1/status/leader and /v1/operator/autopilot/health from scripted states."""

    def __init__(self, pki: Path, address: str, cert: str = "server", port: int = 0):
        self.leader = ""
        self.autopilot: dict = {"Servers": []}
        self.failures_left = 0
        self.requests: list[tuple[str, str | None, bool]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append(
                    (self.path, self.headers.get("X-Consul-Token"), bool(self.connection.getpeercert()))
                )
                if fake.failures_left > 0:
                    fake.failures_left -= 1
                    self.send_error(500, "rpc error: No cluster leader")
                    return
                if self.path == "/v1/status/leader":
                    body = fake.leader
                elif self.path == "/v1/operator/autopilot/health":
                    if self.headers.get("X-Consul-Token") != TOKEN:
                        self.send_error(403, "ACL not found")
                        return
                    body = fake.autopilot
                else:
                    self.send_error(404)
                    return
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
        context.load_verify_locations(pki / "ca.pem")
        context.verify_mode = ssl.CERT_REQUIRED  # Consul's verify_incoming
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def consul(pki):
    fakes: list[FakeConsul] = []

    def start(address: str = "127.0.0.1", cert: str = "server", port: int = 0) -> FakeConsul:
        fakes.append(FakeConsul(pki, address, cert, port))
        return fakes[-1]

    yield start
    for fake in fakes:
        fake.close()


def client_for(pki: Path, port: int, token: str = TOKEN) -> ConsulClient:
    tls = TlsMaterial(
        (pki / "ca.pem").read_text(), (pki / "operator.pem").read_text(), (pki / "operator.key").read_text()
    )
    return ConsulClient(tls, token, port=port, timeout=2)


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def wait(client, peers=(), timeout=60.0, node="server-0", **kwargs):
    time = FakeTime()
    logs: list[str] = []
    result = wait_until_healthy(
        client, node, "127.0.0.1", list(peers), timeout=timeout, poll=5, log=logs.append,
        clock=time.clock, sleep=time.sleep, **kwargs,
    )  # fmt: skip
    return result, logs


def test_first_creation_waits_for_the_agent_only(pki, consul):
    node = consul()
    result, _ = wait(client_for(pki, node.port))
    assert "still forming" in result
    path, _, presented_cert = node.requests[0]
    assert path == "/v1/status/leader" and presented_cert, "the operator certificate must be presented"


def test_not_yet_ready_is_retried(pki, consul):
    node = consul()
    node.failures_left = 3
    result, logs = wait(client_for(pki, node.port))
    assert "still forming" in result
    assert sum("waiting" in line for line in logs) == 3


def test_replaced_server_waits_until_it_is_a_healthy_voter(pki, consul):
    node = consul()
    node.leader = "10.42.0.11:8300"
    states = iter(
        [
            {"Servers": []},
            {"Servers": [{"Name": "server-0", "Healthy": False, "Voter": False}]},
            {"Servers": [{"Name": "server-0", "Healthy": True, "Voter": True}]},
        ]
    )

    def advance(_seconds):
        node.autopilot = next(states)

    node.autopilot = next(states)
    client = client_for(pki, node.port)
    result = wait_until_healthy(
        client, "server-0", "127.0.0.1", [], timeout=60, poll=1, log=lambda _: None, sleep=advance
    )
    assert result.startswith("server-0: healthy voter")
    assert ("/v1/operator/autopilot/health", TOKEN, True) in node.requests


def test_a_peer_with_a_leader_means_the_cluster_exists(pki, consul):
    node = consul("127.0.0.1")
    peer = consul("127.0.0.2", port=node.port)  # the client uses one port for every server, as Consul does
    node.autopilot = {"Servers": [{"Name": "server-0", "Healthy": True, "Voter": True}]}
    peer.leader = "10.42.0.11:8300"
    result, _ = wait(client_for(pki, node.port), peers=["127.0.0.2"])
    assert "healthy voter" in result


def test_timeout_names_the_node_and_the_way_out(pki, consul):
    node = consul()
    node.leader = "10.42.0.11:8300"  # a cluster exists, but this node never becomes a voter
    with pytest.raises(ServerUnhealthyError) as raised:
        wait(client_for(pki, node.port), timeout=30)
    message = str(raised.value)
    assert "server-0 is not healthy after 30 s" in message
    assert "not yet a member of the raft configuration" in message
    assert "journalctl -u consul" in message and "quorum holds" in message


def test_nothing_listening_times_out(pki):
    with pytest.raises(ServerUnhealthyError, match="does not answer"):
        wait(client_for(pki, 1), timeout=10)


def test_wrong_token_never_counts_as_healthy(pki, consul):
    node = consul()
    node.leader = "10.42.0.11:8300"
    node.autopilot = {"Servers": [{"Name": "server-0", "Healthy": True, "Voter": True}]}
    with pytest.raises(ServerUnhealthyError):
        wait(client_for(pki, node.port, token="not-the-token"), timeout=15)


def test_a_certificate_from_another_ca_fails_at_once(pki, consul):
    impostor = consul(cert="impostor")
    with pytest.raises(ssl.SSLCertVerificationError):
        wait(client_for(pki, impostor.port))
    assert impostor.requests == []
