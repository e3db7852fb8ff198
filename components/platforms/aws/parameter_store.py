"""The nodes' secrets in SSM Parameter Store (DESIGN decision 10): one SecureString per secret of a
node, on that node's own path (a server's name, or `clients` for every client), under the stack's own
key (kms.py). A node fetches its parameters at boot; its role policy (iam.py) and the key's policy
both name the ARN pattern of its path, so it reads its own and no other."""

from __future__ import annotations

from collections.abc import Callable

import pulumi
import pulumi_aws as aws

from components.config.settings import PROJECT, Settings
from components.nodes.node_config import ClusterSpec, NodeSpec, ssm_scope
from components.nodes.node_plan import ssm_prefix
from components.nodes.user_data import NodeMaterialInputs, secret_parameters
from components.platforms.aws.tags import stack_tags

ParametersOf = Callable[[str], pulumi.Output[str]]
"""A node's SSM scope -> the ARN pattern of its parameters."""


def parameter_arns(settings: Settings, identity: pulumi.Output, partition: pulumi.Output) -> ParametersOf:
    """The ARN pattern of a scope's parameters, in the stack's account, partition and region."""
    prefix = pulumi.Output.concat(
        "arn:", partition.partition, ":ssm:", settings.aws.region, ":", identity.account_id, ":parameter"
    )
    return lambda scope: pulumi.Output.concat(prefix, f"{ssm_prefix(settings)}/{scope}/*")


def node_parameters(
    name: str,
    settings: Settings,
    node: NodeSpec,
    cluster: ClusterSpec,
    material: NodeMaterialInputs,
    secrets_key: aws.kms.Key,
    opts: pulumi.ResourceOptions,
) -> list[aws.ssm.Parameter]:
    """A node's secrets, each a SecureString under the stack's key on the node's own path."""
    scope = ssm_scope(node)
    return [
        aws.ssm.Parameter(
            f"{name}-{scope}-{parameter.rsplit('/', 1)[1]}",
            name=parameter,
            type="SecureString",
            key_id=secrets_key.arn,
            value=value,
            description=f"{PROJECT} {settings.stack} {scope}: fetched by the node at boot",
            tags=stack_tags(settings, f"{scope}-{parameter.rsplit('/', 1)[1]}"),
            opts=opts,
        )
        for parameter, value in secret_parameters(cluster, node, material).items()
    ]
