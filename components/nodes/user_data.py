"""Node user-data as Pulumi Outputs, from ClusterSecrets' Outputs.

Only the material a delivery mode writes into user-data is resolved into it: with SsmSecrets the
user-data depends on no secret Output, so it is not secret (and holds none); inline, it carries keys
and tokens and is secret because they are.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
from dataclasses import dataclass

import pulumi

from components.nodes import node_config
from components.nodes.node_config import AwsKmsSeal, ClusterSpec, NodeMaterial, NodeSpec, Role, SsmSecrets
from components.pki.cluster_secrets import ClusterSecrets, IssuedCertificate

_SECRET_FIELDS = (
    "key_pem",
    "consul_gossip_key",
    "consul_agent_token",
    "consul_nomad_agent_token",
    "consul_management_token",
    "nomad_gossip_key",
    "consul_vault_token",
)


@dataclass(frozen=True)
class NodeMaterialInputs:
    """NodeMaterial with every field an Input; None where the role has no such secret."""

    ca_pem: pulumi.Input[str]
    cert_pem: pulumi.Input[str]
    key_pem: pulumi.Input[str]
    consul_gossip_key: pulumi.Input[str]
    consul_agent_token: pulumi.Input[str]
    consul_nomad_agent_token: pulumi.Input[str]
    consul_management_token: pulumi.Input[str] | None = None
    nomad_gossip_key: pulumi.Input[str] | None = None
    consul_vault_token: pulumi.Input[str] | None = None


def material_for(secrets: ClusterSecrets, role: Role, certificate: IssuedCertificate) -> NodeMaterialInputs:
    """What a node of `role` holding `certificate` gets from the cluster secrets (least privilege)."""
    server = role is Role.SERVER
    return NodeMaterialInputs(
        ca_pem=secrets.ca_cert_pem,
        cert_pem=certificate.cert_pem,
        key_pem=certificate.private_key_pem,
        consul_gossip_key=secrets.consul_gossip_key,
        consul_agent_token=secrets.consul_agent_token,
        consul_nomad_agent_token=secrets.consul_nomad_agent_token,
        consul_management_token=secrets.consul_management_token if server else None,
        nomad_gossip_key=secrets.nomad_gossip_key if server else None,
        consul_vault_token=secrets.consul_vault_token if server else None,
    )


def _resolve(
    cluster: ClusterSpec, material: NodeMaterialInputs, with_secrets: bool, kms_key_id: pulumi.Input[str] | None
) -> pulumi.Output[tuple[ClusterSpec, NodeMaterial]]:
    fields = {
        f.name: getattr(material, f.name)
        for f in dataclasses.fields(material)
        if getattr(material, f.name) is not None and (with_secrets or f.name not in _SECRET_FIELDS)
    }
    resolved = pulumi.Output.all(kms_key_id=kms_key_id, **fields)

    def build(values: dict) -> tuple[ClusterSpec, NodeMaterial]:
        key_id = values.pop("kms_key_id")
        spec = cluster
        if isinstance(cluster.seal, AwsKmsSeal) and key_id is not None:
            spec = dataclasses.replace(cluster, seal=dataclasses.replace(cluster.seal, kms_key_id=key_id))
        return spec, NodeMaterial(**values)

    return resolved.apply(build)


def user_data(
    cluster: ClusterSpec,
    node: NodeSpec,
    material: NodeMaterialInputs,
    kms_key_id: pulumi.Input[str] | None = None,
) -> pulumi.Output[str]:
    """The node's #cloud-config; `kms_key_id` fills an AwsKmsSeal whose key is an Output."""
    inline = not isinstance(cluster.delivery, SsmSecrets)
    return _resolve(cluster, material, inline, kms_key_id).apply(
        lambda resolved: node_config.user_data(resolved[0], node, resolved[1])
    )


def ec2_user_data_base64(text: str) -> str:
    """Gzip (cloud-init unpacks it) then base64, for EC2's 16 KB user-data limit; deterministic (mtime 0).

    EC2 limits user-data to 16 KB before base64 (the gzip here); over it, this stops the update with
    the size rather than leaving EC2's rejection to name no cause."""
    compressed = gzip.compress(text.encode(), mtime=0)
    if len(compressed) > node_config.EC2_USER_DATA_LIMIT:
        raise pulumi.RunError(
            f"user-data is {len(compressed)} bytes gzipped, over EC2's limit of {node_config.EC2_USER_DATA_LIMIT}:"
            " shorten sshAuthorizedKeys (every key is in every node's user-data)"
        )
    return base64.b64encode(compressed).decode()


def secret_parameters(
    cluster: ClusterSpec, node: NodeSpec, material: NodeMaterialInputs
) -> dict[str, pulumi.Output[str]]:
    """Parameter Store name -> secret Output of each secret file, for the SsmSecrets delivery.

    The names are known without resolving anything, so resources can be declared per name.
    """
    delivery = cluster.delivery
    if not isinstance(delivery, SsmSecrets):
        raise TypeError("secret parameters exist only with SsmSecrets delivery")
    names = [
        node_config.ssm_parameter_name(delivery, node, f.secret_name)
        for f in node_config.node_files(cluster, node, NodeMaterial("", ""), with_secrets=False)
        if f.secret
    ]
    values = _resolve(cluster, material, True, None).apply(
        lambda resolved: node_config.secret_parameters(resolved[0], node, resolved[1])
    )
    return {name: pulumi.Output.secret(values.apply(lambda v, n=name: v[n])) for name in names}
