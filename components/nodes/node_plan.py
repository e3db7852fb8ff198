"""The stack's nodes and the platform-dependent choices of their configuration, in one place.

libvirt: servers joined at their fixed addresses, Shamir seal, secrets inline on the cloud-init disk.
AWS: servers found by tag (cloud auto-join), Vault auto-unsealed by the stack's KMS key, secrets
fetched from SSM Parameter Store; clients are autoscaled, so one client spec stands for all of them.
"""

from __future__ import annotations

from components.config.addressing import client_name, libvirt_client_ips, planned_servers
from components.config.settings import PROJECT, Platform, Settings
from components.nodes.node_config import (
    AwsKmsSeal,
    CloudAutoJoin,
    ClusterSpec,
    InlineSecrets,
    NodeSpec,
    Role,
    ShamirSeal,
    SsmSecrets,
    StaticJoin,
)

# Carried by the server instances only: cloud auto-join must find servers, never clients.
JOIN_TAG_KEY = f"{PROJECT}-join"
# Filled in by components.nodes.user_data from the KMS key's Output; shown as is by offline renders.
KMS_KEY_PENDING = "<the stack's KMS key id, known once it exists>"


def join_tag_value(settings: Settings) -> str:
    return f"{PROJECT}-{settings.stack}"


def ssm_prefix(settings: Settings) -> str:
    return f"/{PROJECT}/{settings.stack}"


def cluster_spec(settings: Settings) -> ClusterSpec:
    common = dict(
        datacenter=settings.datacenter,
        region=settings.region,
        domain=settings.domain,
        server_count=settings.server_count,
        versions=settings.versions,
        ssh_authorized_keys=settings.ssh_authorized_keys,
        package_source=settings.package_source,
        node_os=settings.node_os,
        client_node_class=settings.client_node_class,
    )
    if settings.platform is Platform.AWS:
        region = settings.aws.region
        return ClusterSpec(
            **common,
            join=CloudAutoJoin(JOIN_TAG_KEY, join_tag_value(settings), region),
            seal=AwsKmsSeal(region, KMS_KEY_PENDING),
            delivery=SsmSecrets(region, ssm_prefix(settings)),
        )
    return ClusterSpec(
        **common,
        join=StaticJoin(tuple(s.private_ip for s in planned_servers(settings))),
        seal=ShamirSeal(),
        delivery=InlineSecrets(),
        # One libvirt host is one zone: the spread has one value to use, and the same job runs on both platforms.
        zone=settings.datacenter,
    )


def node_specs(settings: Settings) -> dict[str, NodeSpec]:
    """Node name -> spec; on AWS the autoscaled clients share the spec named `client`."""
    nodes = {s.name: NodeSpec(Role.SERVER, s.name, s.private_ip) for s in planned_servers(settings)}
    if settings.platform is Platform.AWS:
        nodes["client"] = NodeSpec(Role.CLIENT, None, None)
    else:
        for i, ip in enumerate(libvirt_client_ips(settings)):
            nodes[client_name(i)] = NodeSpec(Role.CLIENT, client_name(i), ip)
    return nodes
