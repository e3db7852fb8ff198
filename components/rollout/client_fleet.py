"""ClientFleet: `pulumi up` waits for the AWS client group's instance refresh, and fails naming it.

The Auto Scaling group replaces its clients by itself (an instance refresh, started when the group's
launch template version changes; components/platforms/aws/nodes.py), and the provider returns as
soon as the refresh has started. This resource depends on the group and waits, through Nomad's
API, until the refresh's result is in service:

* on an update (a new launch template version, or a new clientCount or nomadVersion): `count`
  Nomad client nodes registered since this update began (new instances register new nodes) are
  ready, eligible and not draining, no node registered before is still ready (the old clients have
  gone), and every ready node runs the pinned Nomad version;
* on its creation (the stack's first `up`): `count` ready clients on the pinned version.

Nomad's API as read at hashicorp/nomad v2.0.5 (tests/upstream.py nomad_nodes): GET /v1/nodes lists
node stubs with ID, Name, Status, SchedulingEligibility, Drain, Version and CreateIndex
(nomad/structs/structs.go NodeListStub), and needs node:read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.dynamic

from components.dynamic.http_api import DeadlineExceeded, HttpsApi, Poller, Unreachable
from components.dynamic.inputs import changed_keys
from components.dynamic.typed import SECRET, TypedResource
from components.rollout.client_node import nomad_api

SECONDS_PER_CLIENT = 30 * 60
"""A refresh replaces one client at a time: launch and boot (up to 20 minutes, as a libvirt client's
wait), the group's 300 s warm-up, then the old client's drain (the lifecycle hook)."""
POLL_SECONDS = 15.0


class RefreshNotDoneError(Exception):
    pass


def _in_service(node: Mapping[str, Any]) -> bool:
    return node.get("Status") == "ready" and node.get("SchedulingEligibility") == "eligible" and not node.get("Drain")


def _create_index(node: Mapping[str, Any]) -> int:
    index = node.get("CreateIndex")
    return index if isinstance(index, int) else 0


def list_nodes(apis: Sequence[HttpsApi]) -> list[dict[str, Any]] | str:
    """The node stubs from the first server that lists them, else what they answered."""
    problem = "no server answers"
    for api in apis:
        try:
            answer = api.get("/v1/nodes")
        except Unreachable as error:
            problem = f"no answer ({error})"
            continue
        if answer.ok and isinstance(answer.body, list):
            return [n for n in answer.body if isinstance(n, dict)]
        problem = f"GET /v1/nodes answers {answer.status}: {answer.body}"
    return problem


def fleet_done(apis: Sequence[HttpsApi], count: int, version: str, since: int):
    """An attempt for Poller.until: `count` clients registered after index `since` are in service,
    none registered before is still ready, and every ready client runs `version`."""

    def attempt() -> tuple[bool, str]:
        nodes = list_nodes(apis)
        if isinstance(nodes, str):
            return False, nodes
        ready = [n for n in nodes if n.get("Status") == "ready"]
        fresh = [n for n in ready if _create_index(n) > since and _in_service(n)]
        stale = [n for n in ready if _create_index(n) <= since]
        other = sorted({str(n.get("Version")) for n in ready if n.get("Version") != version})
        done = len(fresh) >= count and not stale and not other
        status = f"{len(fresh)} of {count} new clients in service, {len(stale)} old ones still ready"
        return done, status + (f", ready clients on Nomad {', '.join(other)} (not {version})" if other else "")

    return attempt


def _registered_up_to(apis: Sequence[HttpsApi], poller: Poller) -> int:
    """The newest CreateIndex among the nodes now: clients registered later are the refresh's. It waits
    until a server lists them: counting from 0 would take the old clients for new ones."""
    newest: list[int] = []

    def listed() -> tuple[bool, str]:
        nodes = list_nodes(apis)
        if isinstance(nodes, str):
            return False, nodes
        newest.append(max((_create_index(n) for n in nodes), default=0))
        return True, f"clients registered up to index {newest[-1]}"

    poller.until("Nomad's client list before the refresh", listed)
    return newest[-1]


class _ClientFleetProvider(pulumi.dynamic.ResourceProvider):
    def __init__(self, per_client: float = SECONDS_PER_CLIENT, interval: float = POLL_SECONDS):
        self._per_client, self._interval = per_client, interval

    def _wait(self, props: Mapping[str, Any], since: int) -> str:
        apis = [nomad_api(a, props["ca_pem"], props["nomad_token"]) for a in props["addresses"]]
        count, version = int(props["count"]), props["nomad_version"]
        poller = Poller(self._per_client * max(count, 1), self._interval)
        group, region = props["group_name"], props["region"]
        try:
            if since < 0:
                since = _registered_up_to(apis, poller)
            return poller.until(f"{group} instance refresh", fleet_done(apis, count, version, since))
        except DeadlineExceeded as error:
            raise RefreshNotDoneError(
                f"{error}. The Auto Scaling group {group} has not put {count} clients on Nomad {version} in "
                f"service. See `aws autoscaling describe-instance-refreshes --auto-scaling-group-name {group} "
                f"--region {region}`; once the cause is fixed, `aws autoscaling start-instance-refresh "
                f"--auto-scaling-group-name {group} --region {region}` and `pulumi up` again."
            ) from None

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        # The first `up`: every client is new, whatever registered before (nothing did).
        return pulumi.dynamic.CreateResult(id_=props["group_name"], outs={**props, "status": self._wait(props, 0)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changes = changed_keys(olds, news, ("template_version", "count", "nomad_version", "group_name"))
        return pulumi.dynamic.DiffResult(changes=bool(changes))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        replaced = changed_keys(olds, news, ("template_version", "group_name"))
        # A new template: the refresh replaces every client (counted from now). Only a new count: the
        # clients that are there stay, and are counted.
        return pulumi.dynamic.UpdateResult(outs={**news, "status": self._wait(news, -1 if replaced else 0)})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class ClientFleetArgs:
    group_name: pulumi.Input[str]
    region: pulumi.Input[str]
    template_version: pulumi.Input[str]
    """The launch template version the group runs: a new one starts the refresh this waits for."""
    count: pulumi.Input[int]
    nomad_version: pulumi.Input[str]
    addresses: pulumi.Input[Sequence[pulumi.Input[str]]]
    """The servers, where Nomad's API answers."""
    ca_pem: pulumi.Input[str]
    nomad_token: pulumi.Input[str] = field(metadata=SECRET)
    """Nomad's preset management token (node:read)."""


class ClientFleet(TypedResource, module="hashistack", name="ClientFleet"):
    status: pulumi.Output[str]

    def __init__(self, name: str, args: ClientFleetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_ClientFleetProvider(), name, args, opts, outputs=("status",))
