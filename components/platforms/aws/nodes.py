"""AwsNodes: the machines of the AWS platform and what they need before they boot.

In order: Vault's seal key, each node's instance role, the stack's key for the nodes' secrets and,
per node, its SSM parameters and role policy; the servers on their fixed ENIs, one after another
through the server chain; the clients' launch template, the ingress load balancer and the clients'
autoscaling group, which rolls launch-before-terminate and drains each client it terminates.

The nodes boot the release's stock AMI, or (nodeImage `baked`) the stack's baked AMI built over it by
EC2 Image Builder (baked_image.py), whose change rolls the servers one at a time and then the clients.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.config.addressing import PlannedServer, planned_servers
from components.config.node_os import RELEASES
from components.config.settings import PROJECT, NodeImage
from components.nodes.node_config import NodeSpec, Role, ssm_scope
from components.nodes.node_plan import JOIN_TAG_KEY, cluster_spec, join_tag_value, node_specs
from components.nodes.user_data import NodeMaterialInputs, ec2_user_data_base64, material_for, user_data
from components.platforms.aws.baked_image import BakedImage, BakedImageArgs, check_baked_image
from components.platforms.aws.iam import instance_role, node_policy
from components.platforms.aws.kms import secrets_key, vault_seal_key
from components.platforms.aws.load_balancers import ingress_load_balancer
from components.platforms.aws.parameter_store import node_parameters, parameter_arns
from components.platforms.aws.tags import stack_tags
from components.platforms.shape import NodesArgs, hosts_lines, reachable_ips
from components.rollout.client_fleet import ClientFleet, ClientFleetArgs
from components.rollout.server_chain import chain_servers
from components.rollout.server_health import ServerHealth
from components.rollout.vault_init import VaultInit
from components.rollout.vault_standby import VaultStandbyFirst

ROOT_VOLUME_GIB = 30
_IMDS = {"http_endpoint": "enabled", "http_tokens": "required", "instance_metadata_tags": "disabled"}
# One hop: a container behind a bridge (one more hop) cannot reach the instance role's credentials.
_IMDS_HOP_LIMIT = 1


# How long a terminating client may take to drain: nomad.service's stop timeout on clients
# (cloudinit/nomad-drain.conf, 6 min, past drain_on_shutdown's 5-min deadline) plus a margin for the
# watcher's 5-s poll. AWS allows 30 to 7200 s (API LifecycleHook HeartbeatTimeout).
CLIENT_DRAIN_HOOK_SECONDS = 420


def refresh_headroom(clients: int) -> int:
    """MaxHealthyPercentage for one extra instance at a time (AWS allows 100 to 200)."""
    return min(200, 100 + -(-100 // max(clients, 1)))


class AwsNodes(pulumi.ComponentResource):
    servers: dict[str, pulumi.Output[str]]
    """Server name -> its Elastic IP."""
    clients: pulumi.Output[dict[str, str | int]]
    """The clients' autoscaling group: {"autoscalingGroup": name, "size": clientCount}."""
    api_endpoint: pulumi.Output[str]
    """DNS name of the API load balancer: Nomad 4646, Consul 8501 and Vault 8200."""
    ingress_endpoint: pulumi.Output[str]
    """DNS name of the ingress load balancer (80/443 to the clients)."""
    server_health: list[ServerHealth]
    vault_standby_first: VaultStandbyFirst
    """One health gate per server, in chain order."""
    vault_init: VaultInit
    """Vault's initialisation, made within the server chain (components/rollout/server_chain.py)."""
    hosts_lines: pulumi.Output[str]
    """Lines for the operator's /etc/hosts naming the servers and the ingress's services."""
    ssh_commands: pulumi.Output[dict[str, str]]
    """Server name -> ssh command (needs one of the sshAuthorizedKeys); clients have no fixed address."""
    kms_key_id: pulumi.Output[str]
    """The KMS key Vault auto-unseals with."""

    def __init__(self, name: str, args: NodesArgs, opts: pulumi.ResourceOptions | None = None):
        settings, network, secrets = args.settings, args.network, args.secrets
        baked = settings.node_image is NodeImage.BAKED
        if baked:
            # Before any node resource: a stack Image Builder cannot bake for stops here.
            check_baked_image(settings)
        super().__init__("hashistack:aws:Nodes", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        cluster = cluster_spec(settings)
        nodes = node_specs(settings)

        key = vault_seal_key(name, settings, child)
        identity = aws.get_caller_identity_output(opts=invoke)
        partition = aws.get_partition_output(opts=invoke)
        parameters_of = parameter_arns(settings, identity, partition)
        image = aws.ec2.get_ami_output(
            # The release's publisher only: an image of the same name by anyone else is never picked.
            owners=[RELEASES[settings.node_os].ami_owner],
            most_recent=True,
            filters=[
                aws.ec2.GetAmiFilterArgs(name="name", values=[RELEASES[settings.node_os].ami_name]),
                aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
            ],
            opts=invoke,
        )
        # What the nodes boot: the stock image, or the baked one built over it. A newer stock image
        # replaces no node (ignore_changes below); a new baked AMI does, since it changes only with what
        # is in it (a version bump), and it rolls the servers through the chain, then the clients.
        ami_id: pulumi.Output[str] = image.id
        if baked:
            ami_id = BakedImage(
                name,
                BakedImageArgs(
                    settings=settings,
                    parent_image=image.id,
                    root_device_name=image.root_device_name,
                    vpc_id=network.vpc_id,
                    public_subnet_id=network.subnet_ids[0],
                    account_id=identity.account_id,
                    partition=partition.partition,
                ),
                child,
            ).ami_id
        # The baked AMI's root device is its parent's: Image Builder makes it from the build instance,
        # launched from the parent, whose root volume the recipe only resizes.
        root_device_name = image.root_device_name

        # Roles first (the key of the secrets names them), then the key, then each node's secrets under
        # it: a node reads them at boot, though nothing it is given names them.
        client = nodes["client"]
        roles = {
            ssm_scope(node): instance_role(name, settings, node, child)
            for node in (*(nodes[p.name] for p in planned_servers(settings)), client)
        }
        secrets_kms_key = secrets_key(name, settings, roles, parameters_of, identity, partition, child)

        def boot_needs(
            node: NodeSpec, material: NodeMaterialInputs, role: aws.iam.Role, vault_key_arn: pulumi.Output[str] | None
        ) -> list[pulumi.Resource]:
            """What must exist before a node boots: its secrets, under the stack's key, and its policy."""
            parameters = node_parameters(name, settings, node, cluster, material, secrets_kms_key, child)
            policy = node_policy(name, node, role, parameters_of, vault_key_arn, child)
            return [policy, *parameters]

        servers = {}
        for planned in planned_servers(settings):
            node = nodes[planned.name]
            material = material_for(secrets, Role.SERVER, secrets.servers[planned.name])
            role, profile = roles[ssm_scope(node)]
            text = user_data(cluster, node, material, kms_key_id=key.arn)
            servers[planned.name] = (text, profile, boot_needs(node, material, role, key.arn))
        # What takes a server down: new user-data replaces it, a new instance type stops and starts it, a
        # new baked AMI replaces it. (The stock image is not among them: it is ignored once a server exists.)
        machine_specs = {
            server: [text, settings.aws.server_instance_type, *([ami_id] if baked else [])]
            for server, (text, _, _) in servers.items()
        }

        def create_server(planned: PlannedServer, server_opts: pulumi.ResourceOptions) -> aws.ec2.Instance:
            text, profile, server_boot_needs = servers[planned.name]
            return aws.ec2.Instance(
                f"{name}-{planned.name}",
                ami=ami_id,
                instance_type=settings.aws.server_instance_type,
                primary_network_interface=aws.ec2.InstancePrimaryNetworkInterfaceArgs(
                    network_interface_id=network.server_interface_ids[planned.name]
                ),
                iam_instance_profile=profile.name,
                metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                    **_IMDS, http_put_response_hop_limit=_IMDS_HOP_LIMIT
                ),
                root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                    volume_type="gp3",
                    volume_size=ROOT_VOLUME_GIB,
                    encrypted=True,
                    delete_on_termination=True,
                    tags=stack_tags(settings, planned.name),
                ),
                user_data_base64=text.apply(ec2_user_data_base64),
                # New user-data means a new server (through the chain), never a half-applied reboot.
                user_data_replace_on_change=True,
                tags={**stack_tags(settings, planned.name), JOIN_TAG_KEY: join_tag_value(settings)},
                # A newer Ubuntu image would otherwise replace every server on the next `up`. Roll the
                # servers onto it deliberately with `pulumi up --replace <instance URN>` (several
                # URNs at once are safe: the chain still replaces one server at a time). A new baked
                # AMI is followed: it is a new version of what the nodes run.
                opts=pulumi.ResourceOptions.merge(
                    server_opts,
                    pulumi.ResourceOptions(ignore_changes=[] if baked else ["ami"], depends_on=server_boot_needs),
                ),
            )

        chain = chain_servers(
            name,
            settings,
            reachable_ips(network),
            secrets,
            self,
            create_server,
            machine_specs,
            # The boot script's last line is on the serial console (cloudinit/hashistack-bootstrap.sh).
            console_command=lambda machine: pulumi.Output.concat(
                "aws ec2 get-console-output --latest --output text --region ",
                settings.aws.region,
                " --instance-id ",
                machine.id,
            ),
        )
        self.server_health, self.vault_init = chain.gates, chain.vault_init
        self.vault_standby_first = chain.end

        client_material = material_for(secrets, Role.CLIENT, secrets.client)
        client_role, client_profile = roles[ssm_scope(client)]
        client_boot_needs = boot_needs(client, client_material, client_role, vault_key_arn=None)
        template = aws.ec2.LaunchTemplate(
            f"{name}-client",
            description=f"{PROJECT} {settings.stack} client",
            image_id=ami_id,
            instance_type=settings.aws.client_instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=client_profile.arn),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                **_IMDS, http_put_response_hop_limit=_IMDS_HOP_LIMIT
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=root_device_name,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_type="gp3", volume_size=ROOT_VOLUME_GIB, encrypted="true", delete_on_termination="true"
                    ),
                )
            ],
            network_interfaces=[
                aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                    device_index=0,
                    associate_public_ip_address="true",
                    security_groups=[network.client_security_group_id],
                    delete_on_termination="true",
                )
            ],
            user_data=user_data(cluster, client, client_material).apply(ec2_user_data_base64),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=stack_tags(settings, "client"))
                for kind in ("volume", "network-interface")
            ],
            update_default_version=True,
            tags=stack_tags(settings, "client"),
            # As for the servers: a newer stock image rolls the clients only when asked, with
            # `pulumi up --replace <launch template URN>` (the instance refresh below does the rest); a
            # new baked AMI rolls them. A new version comes after the servers (the group's refresh
            # starts when it changes).
            opts=pulumi.ResourceOptions(
                parent=self,
                ignore_changes=[] if baked else ["image_id"],
                depends_on=chain.epoch.after(chain.last),
            ),
        )

        ingress, ingress_targets = ingress_load_balancer(
            name, settings, network.subnet_ids, network.ingress_lb_security_group_id, network.vpc_id, child
        )

        group = aws.autoscaling.Group(
            f"{name}-clients",
            min_size=settings.client_count,
            # Room for one more while a refresh launches a replacement before it terminates a client.
            max_size=settings.client_count + 1,
            desired_capacity=settings.client_count,
            vpc_zone_identifiers=network.subnet_ids,
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            target_group_arns=[t.arn for t in ingress_targets],
            # EC2 health, not the load balancer's: the ingress (a Nomad job) comes later, and an
            # unhealthy target would otherwise have the group replace its clients in a loop.
            health_check_type="EC2",
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                # Launch before terminate, one client at a time: every client keeps serving until its
                # replacement is in service (AWS API RefreshPreferences: MinHealthyPercentage 100,
                # MaxHealthyPercentage up to 200), then it drains (the lifecycle hook below).
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=100,
                    max_healthy_percentage=refresh_headroom(settings.client_count),
                    instance_warmup="300",
                ),
            ),
            # The join tag stays off: cloud auto-join must find servers, never clients.
            tags=[
                aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=True)
                for k, v in stack_tags(settings, "client").items()
            ],
            # Clients after the servers on every `up` but the first (docs/operations.md, Upgrading).
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=chain.epoch.after(chain.last, always=client_boot_needs)
            ),
        )

        # A terminating client waits in Terminating:Wait while its own Nomad drains it
        # (cloudinit/hashistack-asg-drain.sh stops Nomad; drain_on_shutdown drains with the node's own
        # identity). A resource of its own, not the group's initial hooks: `pulumi destroy` deletes
        # it first, and the clients then go without waiting out the hook.
        aws.autoscaling.LifecycleHook(
            f"{name}-client-drain",
            autoscaling_group_name=group.name,
            lifecycle_transition="autoscaling:EC2_INSTANCE_TERMINATING",
            heartbeat_timeout=CLIENT_DRAIN_HOOK_SECONDS,
            # The API's default is ABANDON; either way the instance terminates once the hook times out.
            default_result="CONTINUE",
            opts=child,
        )

        # `up` waits for the group's instance refresh (and the first boot of its clients).
        fleet = ClientFleet(
            f"{name}-client-fleet",
            ClientFleetArgs(
                group_name=group.name,
                region=settings.aws.region,
                template_version=template.latest_version.apply(str),
                count=settings.client_count,
                nomad_version=settings.versions.nomad,
                addresses=list(reachable_ips(network).values()),
                ca_pem=secrets.ca_cert_pem,
                nomad_token=secrets.nomad_bootstrap_token,
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[group]),
        )

        self.servers = {s.name: s.public_ip for s in network.servers}
        self.clients = pulumi.Output.all(group.name, fleet.status).apply(
            lambda values: {"autoscalingGroup": values[0], "size": settings.client_count}
        )
        self.api_endpoint = network.api_dns_name
        self.ingress_endpoint = ingress.dns_name
        self.kms_key_id = key.id
        server_ips = pulumi.Output.all(*self.servers.values())
        # The servers by name; the ingress's names go to DNS (a CNAME to ingressEndpoint): its
        # addresses are the load balancer's, not the stack's.
        self.hosts_lines = server_ips.apply(
            lambda ips: hosts_lines(settings, dict(zip(self.servers, ips, strict=True)), None, args.ingress_names)
        )
        self.ssh_commands = server_ips.apply(
            lambda ips: {node: f"ssh ubuntu@{ip}" for node, ip in zip(self.servers, ips, strict=True)}
        )
        self.register_outputs(
            {
                "servers": self.servers,
                "clients": self.clients,
                "api_endpoint": self.api_endpoint,
                "ingress_endpoint": self.ingress_endpoint,
                "kms_key_id": self.kms_key_id,
            }
        )
