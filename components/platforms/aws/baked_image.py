"""BakedImage: the stack's baked AMI (nodeImage `baked`), built by EC2 Image Builder within `pulumi up`.

The recipe is components/nodes/node_image.py's: the boot script with ROLE=image over the stock AMI of the
release, which installs what either role needs from the nodes' own sources and seals the image. Here it
is delivered to an Image Builder build instance and run there; the AMI that comes out is `ami_id`, which
the servers and the clients' launch template take (components/platforms/aws/nodes.py), so they wait for it.

What Image Builder needs, all made here:
  - the script and its env in a private S3 bucket (the component document cannot hold the script: see
    COMPONENT_DATA_LIMIT), and the component document that fetches and runs them;
  - a recipe named from the image's hash over the stock AMI, the build role and instance profile, an
    infrastructure configuration, and the image itself;
  - a build subnet and security group of its own: Image Builder has no setting that gives the build
    instance a public address (API CreateInfrastructureConfiguration), the stack's subnets assign none
    (a nondefault subnet's public IPv4 addressing attribute is off unless set: VPC User Guide,
    https://docs.aws.amazon.com/vpc/latest/userguide/modify-subnets.html#subnet-public-ip), and the VPC
    has no NAT; and the nodes' security groups admit the cluster's own ports (Consul, Nomad RPC), which
    a build instance has no business reaching.

Checked in AWS's documentation (the tests cite the same pages):
  - https://docs.aws.amazon.com/imagebuilder/latest/userguide/image-builder-setting-up.html (the
    instance profile's managed policies; on Linux Image Builder installs SSM Agent when the parent image
    lacks it, and removes it before the AMI is made)
  - https://docs.aws.amazon.com/imagebuilder/latest/userguide/what-is-image-builder.html#image-builder-os
    (the operating systems Image Builder supports: Ubuntu 24.04 is among them, Debian is not)
  - https://docs.aws.amazon.com/imagebuilder/latest/userguide/toe-use-documents.html and
    https://docs.aws.amazon.com/imagebuilder/latest/userguide/toe-action-modules.html (the AWSTOE
    document: phases, steps, ExecuteBash, S3Download)
  - https://docs.aws.amazon.com/imagebuilder/latest/APIReference/API_CreateComponent.html (`data`)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import yaml

from components.config.node_os import NodeOs
from components.config.settings import PROJECT, Problem, Settings, SettingsError
from components.nodes.node_config import BOOTSTRAP_ENV_PATH as ENV_PATH
from components.nodes.node_config import BOOTSTRAP_PATH as SCRIPT_PATH
from components.nodes.node_image import BOOTSTRAP_SCRIPT, ImageRecipe, recipe
from components.platforms.aws.iam import EC2_ASSUME_ROLE_POLICY
from components.platforms.aws.tags import stack_tags

# CreateComponent `data`: "Length Constraints: Minimum length of 1. Maximum length of 16000" (API
# reference above; botocore's imagebuilder service model, InlineComponentData, says the same). The boot
# script alone is over 17 KB, so it cannot be inlined: it goes to S3 with its env, and the document
# only fetches and runs them (S3Download, then ExecuteBash).
COMPONENT_DATA_LIMIT = 16000

# Image Builder's ResourceName (component, recipe): `^[-_A-Za-z-0-9][-_A-Za-z0-9 ]{1,126}[-_A-Za-z-0-9]$`
# (botocore's imagebuilder model): no dots, so "ubuntu-24.04" cannot be in it as it is.
_NOT_IN_A_NAME = re.compile(r"[^-_A-Za-z0-9]")
NAME_LIMIT = 128

# The releases Image Builder supports (what-is-image-builder.html#image-builder-os). Debian is not one
# of them. Image Builder runs every build step through SSM Agent, which it installs on a Linux parent
# image that lacks it (image-builder-setting-up.html), but no page says that install works on the
# Debian cloud team's AMIs; a user-data override could install the agent, and the build would still run
# on an operating system Image Builder does not support. So Debian 12 bakes on libvirt only, and stops
# here on AWS with a settings error. Ubuntu 24.04 needs nothing: supported, and the agent is either in
# Canonical's image (a snap) or installed by Image Builder.
IMAGE_BUILDER_RELEASES = frozenset({NodeOs.UBUNTU_24_04})

# The boot script and its settings go where a node's first boot has them (ENV_PATH, SCRIPT_PATH: node_config's
# own paths), root's only.

# The baked AMI's root volume: what the install needs with room to spare, below the nodes' 30 GiB
# (nodes.py ROOT_VOLUME_GIB), since an instance's root volume cannot be smaller than its AMI's snapshot.
BUILD_VOLUME_GIB = 20
BUILD_SUBNET_PREFIX = 28

# The image builds within `pulumi up`: the instance's launch and SSM registration, the install, the
# snapshot. AWS's documentation gives no figure; this bounds the wait.
BUILD_TIMEOUT = "90m"

MANAGED_POLICIES = ("EC2InstanceProfileForImageBuilder", "AmazonSSMManagedInstanceCore")
"""The build role's AWS managed policies (image-builder-setting-up.html, IAM: the third it names,
EC2InstanceProfileForImageBuilderECRContainerBuilds, is for container builds). The first grants
s3:GetObject only on buckets named `ec2imagebuilder-*` (security-iam-awsmanpol.html), so the role gets
its own grant on this image's objects."""


def builder_name(settings: Settings, recipe_: ImageRecipe) -> str:
    """The component's and recipe's name in Image Builder: the image's name and the stack (names are
    per account and region, and two stacks may bake the same image), with what the API refuses as `-`."""
    return _NOT_IN_A_NAME.sub("-", f"{recipe_.name}-{settings.stack}")[:NAME_LIMIT]


def build_subnet_cidr(settings: Settings) -> ipaddress.IPv4Network | None:
    """The last /28 of networkCidr outside every subnet of subnetCidrs (None if there is none)."""
    assert settings.aws
    taken = settings.aws.subnet_cidrs
    network = settings.network_cidr
    if network.prefixlen > BUILD_SUBNET_PREFIX:
        return None
    for candidate in reversed(list(network.subnets(new_prefix=BUILD_SUBNET_PREFIX))):
        if not any(candidate.overlaps(subnet) for subnet in taken):
            return candidate
    return None


def baked_image_problems(settings: Settings) -> list[Problem]:
    """Why this stack cannot bake its AMI with Image Builder (empty: it can)."""
    problems = []
    if settings.node_os not in IMAGE_BUILDER_RELEASES:
        problems.append(
            Problem(
                "nodeImage",
                "baked",
                f"EC2 Image Builder does not support {settings.node_os.value} (it supports "
                f"{', '.join(sorted(r.value for r in IMAGE_BUILDER_RELEASES))} of this project's releases; "
                "https://docs.aws.amazon.com/imagebuilder/latest/userguide/what-is-image-builder.html#image-builder-os): "
                "set nodeImage to stock, or nodeOs to ubuntu-24.04",
            )
        )
    if build_subnet_cidr(settings) is None:
        problems.append(
            Problem(
                "subnetCidrs",
                [str(s) for s in settings.aws.subnet_cidrs] if settings.aws else [],
                f"a baked image needs a free /{BUILD_SUBNET_PREFIX} of networkCidr ({settings.network_cidr}) "
                "outside the subnets, for Image Builder's build subnet: leave one, or set nodeImage to stock",
            )
        )
    return problems


def check_baked_image(settings: Settings) -> None:
    """Raises SettingsError when the stack cannot bake its AMI (before any node resource exists)."""
    if problems := baked_image_problems(settings):
        raise SettingsError(problems)


def component_document(name: str, bucket: str, env_key: str, script_key: str, account_id: str) -> dict[str, object]:
    """The AWSTOE document of the bake: fetch the env and the script, make them root's, run the script.

    The script's exit status is the step's: it exits non-zero with its "FAILED" line on any failure,
    which fails the build (and Image Builder terminates the instance: terminate_instance_on_failure)."""
    download = {"expectedBucketOwner": account_id, "overwrite": True}
    return {
        "name": name,
        "description": f"{PROJECT}: {SCRIPT_PATH} with ROLE=image (components/nodes/node_image.py)",
        "schemaVersion": 1.0,
        "phases": [
            {
                "name": "build",
                "steps": [
                    {
                        # S3Download needs every folder of the destination to exist.
                        "name": "PrepareDirectories",
                        "action": "ExecuteBash",
                        "inputs": {
                            "commands": [
                                "set -euo pipefail",
                                "install -d -m 0700 -o root -g root /etc/hashistack",
                                "install -d -m 0755 -o root -g root /usr/local/sbin",
                            ]
                        },
                    },
                    {
                        "name": "DownloadBootstrap",
                        "action": "S3Download",
                        "maxAttempts": 3,
                        "inputs": [
                            {"source": f"s3://{bucket}/{env_key}", "destination": ENV_PATH, **download},
                            {"source": f"s3://{bucket}/{script_key}", "destination": SCRIPT_PATH, **download},
                        ],
                    },
                    {
                        "name": "Bake",
                        "action": "ExecuteBash",
                        "inputs": {
                            "commands": [
                                "set -euo pipefail",
                                # Root's only, as on a node (the env holds no secret, but nobody else's).
                                f"chown root:root {ENV_PATH} {SCRIPT_PATH}",
                                f"chmod 0600 {ENV_PATH}",
                                f"chmod 0700 {SCRIPT_PATH}",
                                # The build instance's own first boot may still hold apt's lock (cloud-init,
                                # apt-daily): wait for cloud-init, and let apt wait for the lock. APT_CONFIG is
                                # read before /etc/apt (apt.conf(5)); /run is gone from the image.
                                "cloud-init status --wait >/dev/null || true",
                                "printf 'DPkg::Lock::Timeout \"600\";\\n' >/run/hashistack-bake-apt.conf",
                                f"APT_CONFIG=/run/hashistack-bake-apt.conf {SCRIPT_PATH}",
                            ]
                        },
                    },
                ],
            }
        ],
    }


@dataclass(frozen=True)
class BakedImageArgs:
    settings: Settings
    parent_image: pulumi.Input[str]
    """The stock AMI of the release (nodes.py's lookup): what the image is baked over."""
    root_device_name: pulumi.Input[str]
    """The parent image's root device, which the recipe's volume replaces."""
    vpc_id: pulumi.Input[str]
    public_subnet_id: pulumi.Input[str]
    """A subnet of the stack that routes to the internet: the build subnet takes its route table."""
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]


class BakedImage(pulumi.ComponentResource):
    ami_id: pulumi.Output[str]
    """The baked AMI (the image's first output AMI)."""
    recipe: ImageRecipe

    def __init__(self, name: str, args: BakedImageArgs, opts: pulumi.ResourceOptions | None = None):
        settings = args.settings
        check_baked_image(settings)
        super().__init__("hashistack:aws:BakedImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.recipe = recipe_ = recipe(settings)
        ib_name = builder_name(settings, recipe_)

        # -- the script and its env, where the build instance fetches them ------------------------------
        bucket = aws.s3.Bucket(
            f"{name}-image-bake",
            # Its objects are this program's; `pulumi destroy` may empty it.
            force_destroy=True,
            tags=stack_tags(settings, "image-bake"),
            opts=child,
        )
        private = aws.s3.BucketPublicAccessBlock(
            f"{name}-image-bake",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-image-bake",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        # SSE-S3: the build role reads it with s3:GetObject alone (a KMS key would need
                        # kms:Decrypt too), and nothing in it is secret.
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=child,
        )
        # Under the image's name: a new image's component names its own objects, never an older one's.
        env_key, script_key = f"{recipe_.name}/bootstrap.env", f"{recipe_.name}/hashistack-bootstrap"
        objects = [
            aws.s3.BucketObjectv2(
                f"{name}-image-bake-{what}",
                bucket=bucket.id,
                key=key,
                content=text,
                server_side_encryption="AES256",
                tags=stack_tags(settings, f"image-bake-{what}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[private, encryption]),
            )
            for what, key, text in (
                ("env", env_key, recipe_.bootstrap_env()),
                ("script", script_key, BOOTSTRAP_SCRIPT.read_text(encoding="utf-8")),
            )
        ]

        # -- the build instance's identity ---------------------------------------------------------------
        role = aws.iam.Role(
            f"{name}-image-build",
            description=f"{PROJECT} {settings.stack} EC2 Image Builder build instance",
            assume_role_policy=EC2_ASSUME_ROLE_POLICY,
            tags=stack_tags(settings, "image-build"),
            opts=child,
        )
        grants: list[pulumi.Resource] = [
            aws.iam.RolePolicyAttachment(
                f"{name}-image-build-{policy}",
                role=role.name,
                policy_arn=pulumi.Output.concat("arn:", args.partition, ":iam::aws:policy/", policy),
                opts=child,
            )
            for policy in MANAGED_POLICIES
        ]
        grants.append(
            aws.iam.RolePolicy(
                f"{name}-image-build",
                role=role.id,
                policy=pulumi.Output.json_dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "BakeFiles",
                                "Effect": "Allow",
                                "Action": ["s3:GetObject"],
                                "Resource": pulumi.Output.concat(bucket.arn, "/", recipe_.name, "/*"),
                            }
                        ],
                    }
                ),
                opts=child,
            )
        )
        profile = aws.iam.InstanceProfile(
            f"{name}-image-build", role=role.name, tags=stack_tags(settings, "image-build"), opts=child
        )

        # -- where it runs: a subnet that gives it a public address, out to the internet only ----------
        routes = aws.ec2.get_route_table_output(
            subnet_id=args.public_subnet_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        subnet = aws.ec2.Subnet(
            f"{name}-image-build",
            vpc_id=args.vpc_id,
            cidr_block=str(build_subnet_cidr(settings)),
            # Image Builder's instances only (nothing else is placed here): the packages, the HashiCorp
            # releases and the SSM endpoints are on the internet, and the VPC has no NAT.
            map_public_ip_on_launch=True,
            tags=stack_tags(settings, "image-build"),
            opts=child,
        )
        association = aws.ec2.RouteTableAssociation(
            f"{name}-image-build", subnet_id=subnet.id, route_table_id=routes.route_table_id, opts=child
        )
        group = aws.ec2.SecurityGroup(
            f"{name}-image-build",
            vpc_id=args.vpc_id,
            description="hashistack image build: outbound only",
            tags=stack_tags(settings, "image-build"),
            opts=child,
        )
        egress = aws.vpc.SecurityGroupEgressRule(
            f"{name}-image-build-egress",
            security_group_id=group.id,
            ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0",
            description="all outbound: packages, releases, Envoy (Docker Hub), S3 and SSM",
            tags=stack_tags(settings, "image-build-egress"),
            opts=child,
        )
        infrastructure = aws.imagebuilder.InfrastructureConfiguration(
            f"{name}-image-build",
            description=f"{PROJECT} {settings.stack}: where the baked image is built",
            instance_profile_name=profile.name,
            instance_types=[settings.aws.client_instance_type],
            # Read through the association: the subnet routes to the internet before a build uses it.
            subnet_id=association.subnet_id,
            security_group_ids=[group.id],
            terminate_instance_on_failure=True,
            instance_metadata_options=aws.imagebuilder.InfrastructureConfigurationInstanceMetadataOptionsArgs(
                http_tokens="required", http_put_response_hop_limit=1
            ),
            resource_tags=stack_tags(settings, "image-build"),
            tags=stack_tags(settings, "image-build"),
            opts=child,
        )

        # -- the component, the recipe and the image ------------------------------------------------------
        data = pulumi.Output.all(bucket.bucket, args.account_id).apply(
            lambda values: yaml.safe_dump(
                component_document(ib_name, values[0], env_key, script_key, values[1]), sort_keys=False
            )
        )
        component = aws.imagebuilder.Component(
            f"{name}-image-bake",
            name=ib_name,
            version="1.0.0",
            platform="Linux",
            description=f"{PROJECT} {recipe_.name}: the boot script with ROLE=image",
            data=data,
            tags=stack_tags(settings, "image-bake"),
            opts=child,
        )
        image_recipe = aws.imagebuilder.ImageRecipe(
            # Named after the image, in Pulumi too: a new image is a new recipe resource (recipes are
            # immutable), created over the stock AMI of the day. Within one image, a newer stock AMI
            # changes nothing (ignore_changes, as nodes.py does for the stock image): Pulumi keeps a
            # resource's ignored inputs from its state, replacements included
            # (https://www.pulumi.com/docs/iac/concepts/options/ignorechanges/), so only a new resource
            # takes the current stock AMI.
            f"{name}-{ib_name}",
            name=ib_name,
            version="1.0.0",
            description=f"{PROJECT} {recipe_.name} (inputs {recipe_.digest})",
            parent_image=args.parent_image,
            components=[aws.imagebuilder.ImageRecipeComponentArgs(component_arn=component.arn)],
            block_device_mappings=[
                aws.imagebuilder.ImageRecipeBlockDeviceMappingArgs(
                    device_name=args.root_device_name,
                    ebs=aws.imagebuilder.ImageRecipeBlockDeviceMappingEbsArgs(
                        volume_type="gp3",
                        volume_size=BUILD_VOLUME_GIB,
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            # The AMI carries the image's exact name and hash (the recipe's name may not have dots).
            ami_tags={
                **stack_tags(settings, "baked-image"),
                "Name": recipe_.name,
                "HashistackImageInputs": recipe_.digest,
            },
            tags=stack_tags(settings, "image-recipe"),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["parent_image"]),
        )
        image = aws.imagebuilder.Image(
            f"{name}-baked-image",
            image_recipe_arn=image_recipe.arn,
            infrastructure_configuration_arn=infrastructure.arn,
            # No test components: what a node must do with the image is what the server chain's health
            # gates check on every node that boots it.
            image_tests_configuration=aws.imagebuilder.ImageImageTestsConfigurationArgs(image_tests_enabled=False),
            # SSM Inventory of the build instance: nothing here reads it.
            enhanced_image_metadata_enabled=False,
            tags=stack_tags(settings, "baked-image"),
            # What the build reads but names nowhere: its files and its permissions.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*objects, *grants, egress],
                custom_timeouts=pulumi.CustomTimeouts(create=BUILD_TIMEOUT),
            ),
        )
        self.ami_id = image.output_resources.apply(lambda resources: resources[0].amis[0].image)
        self.register_outputs({"ami_id": self.ami_id})
