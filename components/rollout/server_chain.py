"""The server chain: servers created one after another, each behind the previous one's health gate and
its own handover, with Vault initialised on the first (DESIGN decision 8).

A platform calls `chain_servers` with a function that creates one server machine; the chain decides
when each is created and makes the gates (components/rollout/server_health.py) and Vault's
initialisation (components/rollout/vault_init.py) between them. It knows no platform: the machines,
their addresses and their console logs come from the caller.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pulumi

from components.config.addressing import PlannedServer, planned_servers
from components.config.settings import Platform, Settings
from components.pki.cluster_secrets import ClusterSecrets
from components.rollout.server_handover import ServerHandover, ServerHandoverArgs
from components.rollout.server_health import ServerHealth, ServerHealthArgs
from components.rollout.stack_epoch import StackEpoch, StackEpochArgs
from components.rollout.vault_init import VaultInit, VaultInitArgs
from components.rollout.vault_standby import VaultStandbyFirst, VaultStandbyFirstArgs


@dataclass(frozen=True)
class ServerChain:
    gates: list[ServerHealth]
    """One health gate per server, in chain order."""
    vault_init: VaultInit
    """Vault's one-time initialisation, on server-0 before its gate (the gates need its keys)."""
    epoch: StackEpoch
    """Which `up` is the stack's first: other chains (libvirt's clients) wait only after it."""
    handovers: list[ServerHandover]
    """One per server, in chain order: the check before its machine goes, and its leadership handed over."""
    end: VaultStandbyFirst
    """After every gate: Vault's active node moved off the first server, for the next roll."""

    @property
    def last(self) -> list[pulumi.Resource]:
        """What comes after the whole chain (the clients wait for it on every `up` but the first)."""
        return [self.end]


def machine_digest(spec: pulumi.Input[object]) -> pulumi.Output[str]:
    """A digest of what replaces a server's machine when it changes (the handover's trigger)."""
    return pulumi.Output.from_input(spec).apply(
        lambda value: hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    )


def _vault_token(epoch: StackEpoch, vault_init: VaultInit | None) -> pulumi.Output[str]:
    """Vault's root token for a handover. None for the first server's: the token exists only once the
    first machine does, which waits for that handover; and none on the first `up`, whose servers boot
    together instead of each waiting for Vault's initialisation (and which has nothing to hand over)."""
    if vault_init is None:
        return pulumi.Output.from_input("")
    return epoch.first_up.apply(lambda first: "" if first else vault_init.root_token)


def chain_servers(
    name: str,
    settings: Settings,
    reachable: Mapping[str, pulumi.Output[str]],
    secrets: ClusterSecrets,
    parent: pulumi.Resource,
    create_server: Callable[[PlannedServer, pulumi.ResourceOptions], pulumi.CustomResource],
    machine_specs: Mapping[str, pulumi.Input[object]],
    console_logs: Mapping[str, str] | None = None,
    console_command: Callable[[pulumi.CustomResource], pulumi.Input[str]] | None = None,
) -> ServerChain:
    """Creates the servers one after another, each behind the previous one's health gate, except on
    the stack's first `up`, when they are created together (components/rollout/stack_epoch.py).

    `create_server` makes one server machine with the options given (parent, the dependency on the
    previous gate, delete-before-replace: a server keeps its name and address, so the old machine
    must be gone first), and gives the same `depends_on` to every other per-server resource the
    machine takes an input from and that can be replaced (libvirt: its cloud-init disk and disk),
    or a replacement of those would take the machine down outside the chain: the engine deletes the
    dependents of a delete-before-replace resource first. A change that replaces every server thus
    replaces one, waits until its Consul, Vault and Nomad have rejoined as healthy voters, then the
    next: never two at once (DESIGN decision 8). Vault is initialised right after the first server
    exists, and unsealed there by its initialisation, so that no gate waits for another (the dynamic
    provider serves four calls at once: with five servers created together, one gate queues).
    `console_logs`: server name -> its serial console log on this host, where a gate reads a failed
    boot's FAILED line (components/rollout/node_console.py); `console_command`: machine -> the command that
    shows its console, named by a gate that times out (AWS).

    `machine_specs`: server name -> everything whose change replaces its machine (user-data, image,
    size). A change runs the server's handover first (components/rollout/server_handover.py): the
    `up` stops there unless every other server is a healthy voter, and the server's leadership of
    Consul, Nomad and Vault moves to another server before its machine goes.
    """
    epoch = StackEpoch(f"{name}-epoch", StackEpochArgs(), pulumi.ResourceOptions(parent=parent))
    gates: list[ServerHealth] = []
    handovers: list[ServerHandover] = []
    vault_init = None
    versions = {"consul": settings.versions.consul, "nomad": settings.versions.nomad, "vault": settings.versions.vault}
    plan = planned_servers(settings)
    for index, planned in enumerate(plan):
        handover = ServerHandover(
            f"{name}-{planned.name}-handover",
            ServerHandoverArgs(
                node_name=planned.name,
                address=reachable[planned.name],
                peers={peer: ip for peer, ip in reachable.items() if peer != planned.name},
                prefer=plan[index - 1].name if index else "",
                machine_spec=machine_digest(machine_specs[planned.name]),
                versions=versions,
                ca_pem=secrets.ca_cert_pem,
                client_cert_pem=secrets.operator.cert_pem,
                client_key_pem=secrets.operator.private_key_pem,
                consul_token=secrets.consul_management_token,
                nomad_token=secrets.nomad_bootstrap_token,
                vault_token=_vault_token(epoch, vault_init),
            ),
            pulumi.ResourceOptions(parent=parent, depends_on=epoch.after(gates[-1:])),
        )
        handovers.append(handover)
        machine = create_server(
            planned,
            pulumi.ResourceOptions(parent=parent, depends_on=[handover], delete_before_replace=True),
        )
        if vault_init is None:
            vault_init = VaultInit(
                f"{name}-vault-init",
                VaultInitArgs(
                    address=reachable[planned.name].apply(lambda ip: f"https://{ip}:8200"),
                    ca_pem=secrets.ca_cert_pem,
                    auto_unseal=settings.platform is Platform.AWS,
                    machine=machine.id,
                ),
                pulumi.ResourceOptions(parent=parent),
            )
        gates.append(
            ServerHealth(
                f"{name}-{planned.name}-healthy",
                ServerHealthArgs(
                    node_name=planned.name,
                    address=reachable[planned.name],
                    peers=[ip for peer, ip in reachable.items() if peer != planned.name],
                    machine_id=machine.id,
                    ca_pem=secrets.ca_cert_pem,
                    client_cert_pem=secrets.operator.cert_pem,
                    client_key_pem=secrets.operator.private_key_pem,
                    consul_token=secrets.consul_management_token,
                    nomad_token=secrets.nomad_bootstrap_token,
                    vault_token=vault_init.root_token,
                    vault_unseal_keys=vault_init.unseal_keys,
                    console_log=(console_logs or {}).get(planned.name, ""),
                    console_command=console_command(machine) if console_command else "",
                ),
                pulumi.ResourceOptions(parent=parent),
            )
        )
    first = plan[0].name
    end = VaultStandbyFirst(
        f"{name}-vault-standby-first",
        VaultStandbyFirstArgs(
            node_name=first,
            address=reachable[first],
            has_peers=len(plan) > 1,
            machines=[gate.machine_id for gate in gates],
            ca_pem=secrets.ca_cert_pem,
            vault_token=vault_init.root_token,
        ),
        pulumi.ResourceOptions(parent=parent),
    )
    return ServerChain(gates, vault_init, epoch, handovers, end)
