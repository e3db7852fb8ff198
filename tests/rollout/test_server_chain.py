"""The server chain over the program's own dependency graph: the first `up` boots every node at once,
every later `up` replaces one server at a time, on both platforms, with 3 and 5 servers.

The graph is what the program registers under the mocks. What makes it the engine's order: a
resource is registered only once everything it depends on exists (pulumi SDK 3.272.0
pulumi/runtime/resource.py and _depends_on.py: an Output-valued depends_on is awaited), and the
engine deletes the dependents of a delete-before-replace resource first (pulumi/pulumi
pkg/resource/deploy/step_generator.go, calculateDependentReplacements; audit: ../shared/audits/engine.md F4).
"""

from __future__ import annotations

import base64
import functools

import pytest
import upstream
from fake_cluster import FakeCluster
from fake_https import operator_tls

from components.nodes.node_image import recipe
from components.platforms.libvirt.stylesheets import console_log_path
from components.rollout.stack_epoch import RUN_TOKEN, _StackEpochProvider
from components.rollout.vault_init import _VaultInitProvider
from scripts.critical_path import boots_on_longest_path
from scripts.stack_files import stack_settings

from conftest import EPOCH, run_program, unwrap

GATE = "pulumi-python:dynamic/hashistack:ServerHealth"
CLIENT_NODE = "pulumi-python:dynamic/hashistack:ClientNode"
HANDOVER = "pulumi-python:dynamic/hashistack:ServerHandover"
SHAPES = [(stack, servers) for stack in ("dev", "aws") for servers in (3, 5)]


@functools.cache
def _run(stack: str, servers: int, later: bool):
    """One program run per shape, shared by the tests that only read it."""
    return run_program(stack, {"serverCount": servers}, preview=True, later=later)


def _gates(monitor) -> dict[str, str]:
    return {r.name.removeprefix("cluster-").removesuffix("-healthy"): r.urn for r in monitor.of_type(GATE)}


def _server_resources(monitor, server: str) -> list:
    """Every resource of one node that a replacement could take down: libvirt's domain, cloud-init
    disk and disk; AWS's server instance (its other inputs are updated in place or created once)."""
    kinds = ("libvirt:index/domain:Domain", "libvirt:index/cloudInitDisk:CloudInitDisk", "libvirt:index/volume:Volume")
    return [
        r
        for r in monitor.registrations
        if r.name in (f"cluster-{server}", f"cluster-{server}-cloudinit", f"cluster-{server}-disk")
        and (r.type in kinds or r.type == "aws:ec2/instance:Instance")
    ]


@pytest.mark.parametrize(("stack", "servers"), SHAPES, ids=[f"{s}-{n}" for s, n in SHAPES])
def test_the_first_up_has_one_boot_on_its_critical_path(stack, servers):
    first = _run(stack, servers, later=False)
    boots, path = boots_on_longest_path(first.registrations)
    assert boots == 1, path
    gates = set(_gates(first).values())
    for i in range(servers):
        for resource in _server_resources(first, f"server-{i}"):
            assert not _waits_for(first, resource.urn) & gates, f"{resource.urn} waits for a gate on the first up"
            assert first.one(EPOCH, "cluster-epoch").urn in _waits_for(first, resource.urn), "the decision is awaited"


@pytest.mark.parametrize(("stack", "servers"), SHAPES, ids=[f"{s}-{n}" for s, n in SHAPES])
def test_a_later_up_replaces_one_server_at_a_time(stack, servers):
    """Each server's every replaceable resource waits for the previous server's gate, so a change to
    every server's user-data (or image) takes down one server, waits until it is a healthy voter
    again, then the next; the clients come after the last (dev: one client; aws: the group)."""
    later = _run(stack, servers, later=True)
    boots, path = boots_on_longest_path(later.registrations)
    assert boots == servers + 1
    clients = "cluster-client-0" if stack == "dev" else "cluster-clients"
    assert [urn.rsplit("::", 1)[1] for urn in path] == [*(f"cluster-server-{i}" for i in range(servers)), clients]
    gates = _gates(later)
    for i in range(servers):
        handover = later.one(HANDOVER, f"cluster-server-{i}-handover")
        expected = {gates[f"server-{i - 1}"]} if i else set()
        assert handover.dependencies & set(gates.values()) == expected, "a handover waits for the previous gate"
        resources = _server_resources(later, f"server-{i}")
        assert len(resources) == (3 if stack == "dev" else 1)
        for resource in resources:
            assert handover.urn in resource.dependencies, f"{resource.urn} goes only after its handover"
            waits_for = _waits_for(later, resource.urn) & set(gates.values())
            assert waits_for == {gates[f"server-{j}"] for j in range(i)}, f"{resource.urn} waits for {waits_for}"


CLIENT_MACHINE_KINDS = (
    "libvirt:index/domain:Domain",
    "libvirt:index/cloudInitDisk:CloudInitDisk",
    "libvirt:index/volume:Volume",
    "aws:autoscaling/group:Group",
    "aws:ec2/launchTemplate:LaunchTemplate",
)


def _waits_for(monitor, urn: str) -> set[str]:
    """Everything `urn` waits for, transitively."""
    by_urn = {r.urn: r for r in monitor.registrations}
    seen, todo = set(), [urn]
    while todo:
        for dep in by_urn[todo.pop()].dependencies:
            if dep not in seen and dep in by_urn:
                seen.add(dep)
                todo.append(dep)
    return seen


def _client_machines(monitor) -> list:
    clients = [r for r in monitor.registrations if "client" in r.name and r.type in CLIENT_MACHINE_KINDS]
    assert any(r.type in ("libvirt:index/domain:Domain", "aws:autoscaling/group:Group") for r in clients)
    return clients


@pytest.mark.parametrize("stack", ["dev", "aws"])
def test_a_later_up_touches_clients_only_after_the_last_server_gate(stack):
    """Servers first, then clients (Consul: "you must upgrade the Consul servers before you upgrade
    the client agents", web-unified-docs content/consul/v2.0.x/content/docs/upgrade/version-specific.mdx;
    Nomad: "5. Upgrade clients: Following the successful upgrade of the servers",
    hashicorp/web-unified-docs content/nomad/v2.0.x/content/docs/upgrade/index.mdx). An unchanged gate is a "same" step, so
    an `up` that replaces no server delays no client."""
    later = _run(stack, 3, later=True)
    last_gate = _gates(later)["server-2"]
    for client in _client_machines(later):
        assert last_gate in _waits_for(later, client.urn), f"{client.urn} does not wait for the last server gate"


@pytest.mark.parametrize("stack", ["dev", "aws"])
def test_the_first_up_boots_clients_beside_the_servers(stack):
    first = _run(stack, 3, later=False)
    gates = set(_gates(first).values())
    for client in _client_machines(first):
        assert not _waits_for(first, client.urn) & gates, f"{client.urn} waits for a server gate on the first up"


@pytest.mark.parametrize("later", [False, True], ids=["first-up", "later-up"])
def test_libvirt_clients_are_replaced_one_at_a_time_and_drained_first(later):
    """Each client's resources wait for the previous client's ClientNode (a ready Nomad node again) on
    a later `up`; each ClientNode takes its domain's id, so the engine deletes it, draining the node,
    before a replaced domain goes (components/rollout/client_node.py)."""
    monitor = run_program("dev", {"clientCount": 3}, preview=True, later=later)
    nodes = {r.name.removeprefix("cluster-").removesuffix("-nomad"): r for r in monitor.of_type(CLIENT_NODE)}
    assert sorted(nodes) == ["client-0", "client-1", "client-2"]
    for i in range(3):
        client = f"client-{i}"
        domain = monitor.one("libvirt:index/domain:Domain", f"cluster-{client}")
        assert domain.urn in nodes[client].dependencies and nodes[client].inputs["machine_id"] == domain.id
        for resource in _server_resources(monitor, client):
            waits_for = resource.dependencies & {n.urn for n in nodes.values()}
            expected = {nodes[f"client-{i - 1}"].urn} if later and i else set()
            assert waits_for == expected, f"{resource.urn} waits for {waits_for}"
    boots, _ = boots_on_longest_path(monitor.registrations)
    assert boots == (3 + 3 if later else 1), "later: the servers, then the clients one by one"


def test_a_new_base_image_is_a_new_volume_beside_the_old_one():
    """Named by its checksum: a new image is created, each disk moves to it in its server's chain
    step, and the old one is deleted at the end of the run, once nothing uses it. One fixed name would
    be replaced delete-before-replace (the bridge forces it for an explicit name: pulumi-libvirt 0.5.4
    provider/resources.go SetAutonaming), taking every disk down at once."""
    stock = {"nodeImage": "stock"}
    old = run_program("dev", stock, preview=True, later=True)
    new = run_program("dev", {**stock, "libvirtBaseImageSha256": "ab" * 32}, preview=True, later=True)
    (old_base,) = [r for r in old.of_type("libvirt:index/volume:Volume") if "base-image" in r.name]
    (new_base,) = [r for r in new.of_type("libvirt:index/volume:Volume") if "base-image" in r.name]
    assert old_base.name == "cluster-base-image-f1652d29d497" and new_base.name == "cluster-base-image-abababababab"
    assert new_base.inputs["name"] == "hashistack-dev-ubuntu-24.04-abababababab.qcow2"
    disks = [r for r in new.of_type("libvirt:index/volume:Volume") if r.name.endswith("-disk")]
    assert disks and all(new_base.urn in d.dependencies for d in disks)
    # A baked image is named by its inputs (components/nodes/node_image.py): a version bump is a new one.
    old = run_program("dev", preview=True, later=True)
    new = run_program("dev", {"nomadVersion": "2.0.8"}, preview=True, later=True)
    (old_base,) = [r for r in old.of_type("libvirt:index/volume:Volume") if "base-image" in r.name]
    (new_base,) = [r for r in new.of_type("libvirt:index/volume:Volume") if "base-image" in r.name]
    assert old_base.name == f"cluster-base-image-{recipe(stack_settings('dev')).name}"
    assert new_base.name == f"cluster-base-image-{recipe(stack_settings('dev', {'nomadVersion': '2.0.8'})).name}"
    disks = [r for r in new.of_type("libvirt:index/volume:Volume") if r.name.endswith("-disk")]
    assert disks and all(new_base.urn in d.dependencies for d in disks)


def test_the_epoch_keeps_the_run_that_created_it():
    provider = _StackEpochProvider()
    created = provider.create({"run": "run-1"})
    assert (created.id, created.outs) == ("epoch", {"created_in": "run-1"})
    assert provider.diff("epoch", {"run": "run-1", "created_in": "run-1"}, {"run": "run-2"}).changes is False
    first = run_program("dev", preview=True)
    epoch = first.one(EPOCH, "cluster-epoch")
    assert epoch.inputs["run"] == RUN_TOKEN and len(RUN_TOKEN) == 32
    assert epoch.parent.endswith("hashistack:libvirt:Nodes::cluster"), "inside the nodes, destroyed with them"
    pickled = base64.b64decode(unwrap(epoch.inputs["__provider"]))
    assert b"components.rollout.stack_epoch" in pickled and b"_StackEpochProvider" in pickled


def test_vault_init_unseals_server_0_so_no_gate_waits_for_another(pki, fake_api):
    """Five servers created together: the dynamic provider runs four calls at once (pulumi SDK 3.272.0
    pulumi/dynamic/__main__.py, ThreadPoolExecutor(max_workers=4)), so one gate queues. Vault's
    followers join only an unsealed leader (raft retry_join), so if only gate-0 unsealed server-0 and
    gate-0 were the one queued, the others would wait on it. VaultInit unseals server-0 itself."""
    cluster = FakeCluster(fake_api, servers=5)
    cluster.boot(*cluster.names)
    props = {
        "address": f"https://{cluster.address('server-0')}:{cluster.ports[2]}",
        "ca_pem": operator_tls(pki).ca_pem,
        "auto_unseal": False,
        "shares": 5,
        "threshold": 3,
        "machine": "m-0",
    }
    created = _VaultInitProvider(timeout=5, interval=0.01).create(props)
    assert len(created.outs["unseal_keys"]) == 5
    assert "server-0" in cluster.vault.unsealed, "the leader is unsealed without its gate"
    cluster.retry_join()
    assert cluster.vault.challenged >= {"server-1", "server-2", "server-3", "server-4"}, "followers can join now"


def test_each_gate_asks_the_other_servers_and_reads_its_own_console(program):
    """A gate judges "does a cluster exist" from its peers (components/rollout/server_health.py), so its
    peers are every other server, at the address the program reaches them at; a failed boot is read
    from the console log on this host (libvirt) or named by the command that shows it (AWS)."""
    reachable = unwrap(program.stack_outputs["serverAddresses"])
    gates = program.of_type(GATE)
    assert len(gates) == len(reachable) == 3
    for gate in gates:
        node = gate.inputs["node_name"]
        assert unwrap(gate.inputs["address"]) == reachable[node]
        assert sorted(unwrap(gate.inputs["peers"])) == sorted(ip for name, ip in reachable.items() if name != node)
        console_log, console_command = (
            gate.inputs.get("console_log", ""),
            unwrap(gate.inputs.get("console_command", "")),
        )
        if program.stack == "aws":
            assert console_log == "" and console_command.startswith("aws ec2 get-console-output"), gate.urn
        else:
            assert console_log == str(console_log_path(program.stack, node)) and console_command == "", gate.urn


@pytest.mark.parametrize("stack", ["dev", "aws"])
def test_each_handover_knows_the_cluster_it_checks(stack):
    """Peers are every other server; leadership goes to the one replaced just before; the first
    server's handover has no Vault token (it exists only after that server's machine), later ones do
    on a later `up`; the versions are what this `up` installs."""
    later = _run(stack, 3, later=True)
    handovers = [unwrap(later.one(HANDOVER, f"cluster-server-{i}-handover").inputs) for i in range(3)]
    for i, handover in enumerate(handovers):
        assert handover["node_name"] == f"server-{i}"
        assert sorted(handover["peers"]) == [f"server-{j}" for j in range(3) if j != i]
        assert handover["address"] not in handover["peers"].values()
        assert handover["prefer"] == (f"server-{i - 1}" if i else "")
        assert handover["versions"] == {
            "consul": upstream.PINNED["consul"],
            "nomad": upstream.PINNED["nomad"],
            "vault": upstream.PINNED["vault"],
        }
    assert handovers[0]["vault_token"] == ""
    assert all(h["vault_token"].startswith("hvs.") for h in handovers[1:])
    first = _run(stack, 3, later=False)
    assert all(
        unwrap(first.one(HANDOVER, f"cluster-server-{i}-handover").inputs)["vault_token"] == "" for i in range(3)
    )


@pytest.mark.parametrize("stack", ["dev", "aws"])
def test_a_version_bump_changes_every_machine_spec_and_nothing_else_does(stack):
    def specs(config):
        run = run_program(stack, {"serverCount": 3, **config}, preview=True, later=True)
        return [unwrap(run.one(HANDOVER, f"cluster-server-{i}-handover").inputs)["machine_spec"] for i in range(3)]

    before = specs({})
    assert len(set(before)) == 3, "each server's spec is its own"
    bumped = specs({"nomadVersion": "99.0.0"})
    assert all(b != a for a, b in zip(before, bumped, strict=True))
    assert specs({}) == before, "the digest is stable between runs"
