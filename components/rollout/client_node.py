"""ClientNode: a libvirt client as Nomad sees it: ready before the next client is touched, drained
before its machine goes.

libvirt deletes a domain with a hard power-off, so a replaced client would take its allocations down
unannounced. This resource depends on the client's domain (`machine_id`), and its diff asks for a
replacement when that changes; the engine deletes the dependents of a delete-before-replace resource
first (pulumi/pulumi pkg/resource/deploy/step_generator.go, calculateDependentReplacements), so its
delete, which drains the node through Nomad's API, runs while the old machine still does. Its
creation waits until the new machine's Nomad client is ready, and the next client waits for it
(components/platforms/libvirt/nodes.py), so clients are replaced one at a time on every `up` but the first.

Nomad's API as read at hashicorp/nomad v2.0.5 (tests/upstream.py has each answer with its source):
GET /v1/nodes lists node stubs (api/nodes.go NodeListStub: ID, Name, Status, SchedulingEligibility,
Drain); PUT /v1/node/<id>/drain takes {"DrainSpec": {"Deadline": <ns>, "IgnoreSystemJobs": false},
"MarkEligible": false} (command/agent/node_endpoint.go nodeToggleDrain); a drain is over once the
node's DrainStrategy is null (api/nodes.go MonitorDrain); a node takes work when it is "ready",
"eligible" and not draining (nomad/structs/structs.go Node.Ready).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.dynamic

from components.dynamic.http_api import DeadlineExceeded, HttpsApi, Poller, TlsMaterial, Unreachable
from components.dynamic.inputs import changed_keys
from components.dynamic.typed import SECRET, TypedResource

NOMAD_HTTPS_PORT = 4646
READY_TIMEOUT_SECONDS = 20 * 60  # a first boot installs packages; the ACLs come after every server
DRAIN_DEADLINE_SECONDS = 5 * 60
"""How long Nomad gives the node's allocations to move before it stops them (DrainSpec.Deadline)."""


class ClientNotReadyError(Exception):
    pass


def nomad_api(address: str, ca_pem: str, token: str) -> HttpsApi:
    """Nomad's HTTPS API on a server, the cluster CA verified (it asks no client certificate)."""
    return HttpsApi(f"https://{address}:{NOMAD_HTTPS_PORT}", TlsMaterial(ca_pem), headers={"X-Nomad-Token": token})


def _nodes_named(nomad: HttpsApi, name: str) -> tuple[list[dict[str, Any]], str]:
    """The node stubs called `name` (a replaced machine registers a new node under the same name),
    and what the list answered when it was no list."""
    answer = nomad.get("/v1/nodes")
    if not answer.ok or not isinstance(answer.body, list):
        return [], f"GET /v1/nodes answers {answer.status}: {answer.body}"
    return [n for n in answer.body if isinstance(n, dict) and n.get("Name") == name], ""


def node_ready(nomad: HttpsApi, name: str):
    """An attempt for Poller.until: a node of that name is ready, eligible and not draining."""

    def attempt() -> tuple[bool, str]:
        nodes, problem = _nodes_named(nomad, name)
        if problem:
            return False, problem
        for node in nodes:
            if (
                node.get("Status") == "ready"
                and node.get("SchedulingEligibility") == "eligible"
                and not node.get("Drain")
            ):
                return True, f"{name}: Nomad node {node.get('ID')} is ready"
        states = ", ".join(f"{n.get('ID')} {n.get('Status')}/{n.get('SchedulingEligibility')}" for n in nodes)
        return False, f"{name}: no ready Nomad node yet ({states or 'not registered'})"

    return attempt


def drain(nomad: HttpsApi, name: str, poller: Poller, log=pulumi.log.info) -> str:
    """Drains every live node called `name` and waits until the drains are over. A Nomad that cannot
    be asked (the servers are gone too, as in `pulumi destroy`) is no reason to keep the machine."""
    try:
        nodes, problem = _nodes_named(nomad, name)
    except Unreachable as error:
        return f"{name}: not drained, Nomad does not answer ({error})"
    if problem:
        return f"{name}: not drained, {problem}"
    live = [n["ID"] for n in nodes if n.get("Status") != "down" and n.get("ID")]
    if not live:
        return f"{name}: no live Nomad node to drain"
    spec = {"DrainSpec": {"Deadline": DRAIN_DEADLINE_SECONDS * 10**9, "IgnoreSystemJobs": False}, "MarkEligible": False}
    for node_id in live:
        answer = nomad.request("PUT", f"/v1/node/{node_id}/drain", spec)
        if not answer.ok:
            return f"{name}: not drained, PUT /v1/node/{node_id}/drain answers {answer.status}: {answer.body}"
        log(f"{name}: draining Nomad node {node_id} (deadline {DRAIN_DEADLINE_SECONDS} s)")

    def drained() -> tuple[bool, str]:
        pending = []
        for node_id in live:
            node = nomad.get(f"/v1/node/{node_id}")
            if node.ok and isinstance(node.body, dict) and node.body.get("DrainStrategy") is not None:
                pending.append(node_id)
        return not pending, f"{name}: drain of {', '.join(pending)} in progress" if pending else f"{name}: drained"

    try:
        return poller.until(f"{name} drain", drained)
    except DeadlineExceeded as error:
        return f"{name}: {error}; the machine goes anyway"


class _ClientNodeProvider(pulumi.dynamic.ResourceProvider):
    def __init__(self, timeout: float = READY_TIMEOUT_SECONDS, interval: float = 5.0):
        self._timeout, self._interval = timeout, interval

    def _nomad(self, props: dict[str, Any]) -> HttpsApi:
        """The first server whose Nomad answers (during a roll one of them may be being replaced);
        the first server when none does, so that the caller reports it."""
        apis = [nomad_api(address, props["ca_pem"], props["nomad_token"]) for address in props["addresses"]]
        for api in apis:
            try:
                api.get("/v1/status/leader")  # any answer will do: it is listening
            except Unreachable:
                continue
            return api
        return apis[0]

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        name = props["node_name"]
        try:
            status = Poller(self._timeout, self._interval).until(f"{name} Nomad", node_ready(self._nomad(props), name))
        except DeadlineExceeded as error:
            raise ClientNotReadyError(
                f"{error}. The next clients were left as they are. Look at the node (`journalctl -u nomad`, "
                f"/var/log/hashistack-bootstrap.log), fix the cause and run `pulumi up` again."
            ) from None
        return pulumi.dynamic.CreateResult(id_=name, outs={**props, "status": status})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        # A new machine: drain the old one's node (delete) and wait for the new one's (create).
        replaces = changed_keys(olds, news, ("node_name", "machine_id"))
        return pulumi.dynamic.DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=True)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        pulumi.log.info(
            drain(self._nomad(props), props["node_name"], Poller(DRAIN_DEADLINE_SECONDS + 60, self._interval))
        )


@dataclass(frozen=True)
class ClientNodeArgs:
    node_name: pulumi.Input[str]
    machine_id: pulumi.Input[str]
    """The client's machine: a new one drains the old node first."""
    addresses: pulumi.Input[list[str]]
    """The servers' addresses, where Nomad's API answers."""
    ca_pem: pulumi.Input[str]
    nomad_token: pulumi.Input[str] = field(metadata=SECRET)
    """Nomad's preset management token (node:write to drain, node:read to list)."""


class ClientNode(TypedResource, module="hashistack", name="ClientNode"):
    status: pulumi.Output[str]

    def __init__(self, name: str, args: ClientNodeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_ClientNodeProvider(), name, args, opts, outputs=("status",))
