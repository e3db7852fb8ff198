"""The address plan: which private IP each server gets, known before any machine exists.

Servers get fixed private addresses on both platforms (DESIGN decision 1): their certificates and
user-data name them, and a replaced server comes back with the same address, so peers' `retry_join`
lists and certificates stay valid. On libvirt the clients get fixed addresses too; on AWS they come
from the subnets' DHCP in an autoscaling group.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.config.settings import (
    AWS_SERVER_HOST_OFFSET,
    CLIENT_HOST_OFFSET,
    SERVER_HOST_OFFSET,
    Platform,
    Settings,
)


@dataclass(frozen=True)
class PlannedServer:
    name: str
    """Stable node name, the hostname and the Consul/Nomad node name."""
    private_ip: str
    subnet_index: int
    """Index into the AWS subnets (availability zones); 0 on libvirt."""


def server_name(index: int) -> str:
    return f"server-{index}"


def client_name(index: int) -> str:
    return f"client-{index}"


def planned_servers(settings: Settings) -> list[PlannedServer]:
    if settings.platform is Platform.AWS:
        subnets = settings.aws.subnet_cidrs
        # Round-robin over the availability zones so that losing one zone never loses the quorum.
        return [
            PlannedServer(
                server_name(i),
                str(subnets[i % len(subnets)][AWS_SERVER_HOST_OFFSET + i // len(subnets)]),
                i % len(subnets),
            )
            for i in range(settings.server_count)
        ]
    return [
        PlannedServer(server_name(i), str(settings.network_cidr[SERVER_HOST_OFFSET + i]), 0)
        for i in range(settings.server_count)
    ]


def libvirt_client_ips(settings: Settings) -> list[str]:
    return [str(settings.network_cidr[CLIENT_HOST_OFFSET + i]) for i in range(settings.client_count)]
