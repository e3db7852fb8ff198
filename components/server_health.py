"""ServerHealth: a resource whose creation waits until a (re)created server is healthy again.

It is the gate of the server chain (components/platform.py). A server counts as healthy when its
Consul agent answers over mutual TLS and, if the cluster already exists (another server reports a
leader), when Consul's autopilot lists it as a healthy voter. On the very first `up` no cluster exists
yet, since it forms only once `bootstrap_expect` servers are up, so the gate waits for the agent only.

The check is re-run whenever the machine behind it is replaced (its id is an input), and never
skips TLS verification: the cluster CA and the operator's client certificate are used throughout.
"""

from __future__ import annotations

import json
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic

CONSUL_HTTPS_PORT = 8501
DEFAULT_TIMEOUT_SECONDS = 20 * 60  # a first boot installs packages before Consul starts
POLL_SECONDS = 5.0


class ServerUnhealthyError(Exception):
    pass


@dataclass(frozen=True)
class TlsMaterial:
    ca_pem: str
    client_cert_pem: str
    client_key_pem: str


class ConsulClient:
    """Just enough of Consul's HTTP API, over mutual TLS with the cluster CA."""

    def __init__(self, tls: TlsMaterial, token: str, port: int = CONSUL_HTTPS_PORT, timeout: float = 10.0):
        self._context = ssl.create_default_context(cadata=tls.ca_pem)
        # load_cert_chain reads files only; the key lives in a private temp dir for this call.
        with tempfile.TemporaryDirectory() as directory:
            cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
            cert.write_text(tls.client_cert_pem)
            key.touch(mode=0o600)
            key.write_text(tls.client_key_pem)
            self._context.load_cert_chain(cert, key)
        self._token = token
        self.port = port
        self._timeout = timeout

    def get(self, address: str, path: str) -> Any:
        request = urllib.request.Request(
            f"https://{address}:{self.port}{path}", headers={"X-Consul-Token": self._token}
        )
        with urllib.request.urlopen(request, context=self._context, timeout=self._timeout) as response:
            return json.load(response)


def _answer(client: ConsulClient, address: str, path: str) -> tuple[bool, Any]:
    """(answered, body); a refused, unreachable or failing server has not answered."""
    try:
        return True, client.get(address, path)
    except urllib.error.URLError as error:
        if isinstance(error.reason, ssl.SSLCertVerificationError):
            raise error.reason from None  # a certificate the cluster CA did not sign will not fix itself
        return False, None
    except ssl.SSLCertVerificationError:
        raise
    except (OSError, ValueError):
        return False, None


def wait_until_healthy(
    client: ConsulClient,
    node_name: str,
    address: str,
    peers: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    poll: float = POLL_SECONDS,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Blocks until `node_name` at `address` is healthy; returns what was established."""
    deadline = clock() + timeout
    last = "no answer yet"
    waiting_for_agent = True
    while clock() < deadline:
        answered, leader = _answer(client, address, "/v1/status/leader")
        if answered:
            if waiting_for_agent:
                log(f"{node_name}: Consul answers at {address}")
                waiting_for_agent = False
            cluster_exists = bool(leader) or any(_answer(client, peer, "/v1/status/leader")[1] for peer in peers)
            if not cluster_exists:
                return f"{node_name}: Consul answers; the cluster is still forming (first creation)"
            _, health = _answer(client, address, "/v1/operator/autopilot/health")
            server = next((s for s in (health or {}).get("Servers", []) if s.get("Name") == node_name), None)
            if server and server.get("Healthy") and server.get("Voter"):
                return f"{node_name}: healthy voter (leader {leader or 'elsewhere'})"
            last = f"autopilot reports {server}" if server else "not yet a member of the raft configuration"
        else:
            last = f"Consul does not answer at {address}:{client.port} (still booting?)"
        log(f"{node_name}: waiting, {last}")
        sleep(poll)
    raise ServerUnhealthyError(
        f"{node_name} is not healthy after {int(timeout)} s: {last}. The next servers were left as they "
        f"are, so the quorum holds. Look at the node (`journalctl -u consul`, "
        f"/var/log/hashistack-bootstrap.log, /var/log/cloud-init-output.log), fix the cause and run "
        f"`pulumi up` again; it resumes with this server."
    )


_INPUTS = ("node_name", "address", "peers", "machine_id", "ca_pem", "client_cert_pem", "client_key_pem", "token")
_SECRET_INPUTS = ["client_key_pem", "token"]


class _ServerHealthProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        client = ConsulClient(
            TlsMaterial(props["ca_pem"], props["client_cert_pem"], props["client_key_pem"]), props["token"]
        )
        status = wait_until_healthy(client, props["node_name"], props["address"], props["peers"])
        return pulumi.dynamic.CreateResult(
            id_=f"{props['node_name']}@{props['machine_id']}", outs={**props, "status": status}
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        # Only a new machine (or a moved one) needs the gate again; rotated credentials do not.
        replaces = [k for k in ("machine_id", "address", "node_name") if olds.get(k) != news.get(k)]
        return pulumi.dynamic.DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class ServerHealthArgs:
    node_name: pulumi.Input[str]
    address: pulumi.Input[str]
    peers: pulumi.Input[Sequence[pulumi.Input[str]]]
    machine_id: pulumi.Input[str]
    """The machine's id; a new id (a replaced machine) re-runs the check."""
    ca_pem: pulumi.Input[str]
    client_cert_pem: pulumi.Input[str]
    client_key_pem: pulumi.Input[str]
    token: pulumi.Input[str]
    """A Consul token with operator:read (autopilot health)."""


class ServerHealth(pulumi.dynamic.Resource, module="hashistack", name="ServerHealth"):
    status: pulumi.Output[str]
    """What the check established."""

    def __init__(self, name: str, args: ServerHealthArgs, opts: pulumi.ResourceOptions | None = None):
        props = {key: getattr(args, key) for key in _INPUTS}
        super().__init__(
            _ServerHealthProvider(),
            name,
            {**props, "status": None},
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=_SECRET_INPUTS)),
        )
