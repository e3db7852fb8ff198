"""The AWS platform (stack `aws`): a VPC of public subnets, servers on fixed ENIs, clients autoscaled.

Real differences from libvirt, kept visible: servers join by instance tag (cloud auto-join), Vault
unseals itself with the stack's KMS key, nodes fetch their secrets from SSM Parameter Store with an
instance role scoped to their own path (DESIGN decision 10), and the APIs and the ingress sit behind
network load balancers. A server's ENI and Elastic IP exist before its certificate (DESIGN decision 1),
so a replaced server comes back with the same addresses and the same certificate names.

Why public subnets: every node has a public address, and security groups admit nothing from the
internet except 80/443 through the ingress load balancer (SSH and the APIs only from apiAllowedCidrs).
A private-subnet variant needs a NAT gateway per availability zone for apt, the HashiCorp releases and
the AWS APIs: about USD 32/month each (USD 0.045/hour in us-east-1, a little more in eu-central-1)
plus about USD 0.045 per GB processed, so roughly USD 100/month for three zones before any traffic.
What it would save is the nodes' public IPv4 charge, USD 0.005/hour (about USD 3.65/month) per
address. It would also need a bastion or SSM Session Manager for SSH, and the program's server
health checks would have to run from inside the VPC.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.config.addressing import PlannedServer, planned_servers
from components.config.node_os import RELEASES
from components.config.settings import PROJECT, Settings
from components.nodes.node_config import ClusterSpec, NodeSpec, Role, ssm_scope
from components.nodes.node_plan import JOIN_TAG_KEY, cluster_spec, join_tag_value, node_specs, ssm_prefix
from components.nodes.user_data import (
    NodeMaterialInputs,
    ec2_user_data_base64,
    material_for,
    secret_parameters,
    user_data,
)
from components.platforms.shape import NetworkArgs, NodesArgs, ServerAddress, hosts_lines, reachable_ips
from components.rollout.server_chain import chain_servers
from components.rollout.server_health import ServerHealth
from components.rollout.vault_init import VaultInit

NOMAD_HTTP_PORT = 4646
NOMAD_RPC_PORT = 4647
NOMAD_SERF_PORT = 4648
CONSUL_RPC_PORT = 8300
CONSUL_SERF_LAN_PORT = 8301
CONSUL_HTTPS_PORT = 8501
VAULT_API_PORT = 8200
VAULT_CLUSTER_PORT = 8201
SSH_PORT = 22
API_PORTS = (NOMAD_HTTP_PORT, CONSUL_HTTPS_PORT, VAULT_API_PORT)
INGRESS_PORTS = (80, 443)
# Nomad's default dynamic port range: Connect sidecars and the ingress's backends listen there.
DYNAMIC_PORTS = (20000, 32000)
WORLD_IPV4 = "0.0.0.0/0"

ROOT_VOLUME_GIB = 30
# The longest window: a deleted key makes Vault's data unreadable, and deletion can be cancelled until then.
KMS_DELETION_WINDOW_DAYS = 30
# What the account (its IAM policies) may do with the secrets key: AWS KMS docs, "Default key policy",
# the key administrators' statement; no use of the key (no Decrypt) among them.
KMS_ADMINISTRATION = (
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
)
# ELB names are at most 32 characters and Pulumi's auto-name appends 8 ("-" and 7 random characters).
_ELB_NAME_MAX = 32 - 8
_IMDS = {"http_endpoint": "enabled", "http_tokens": "required", "instance_metadata_tags": "disabled"}
# One hop: a container behind a bridge (one more hop) cannot reach the instance role's credentials.
_IMDS_HOP_LIMIT = 1


# How long a terminating client may take to drain: nomad.service's stop timeout on clients
# (cloudinit/nomad-drain.conf, 6 min, past drain_on_shutdown's 5-min deadline) plus a margin for the
# watcher's 5-s poll. AWS allows 30 to 7200 s (API LifecycleHook HeartbeatTimeout).
CLIENT_DRAIN_HOOK_SECONDS = 420
# Connections to a deregistered target get this long to finish; a drained client keeps serving
# until Nomad stops its allocations, so a short delay loses nothing (AWS default: 300 s).
DEREGISTRATION_DELAY_SECONDS = 30


def refresh_headroom(clients: int) -> int:
    """MaxHealthyPercentage for one extra instance at a time (AWS allows 100 to 200)."""
    return min(200, 100 + -(-100 // max(clients, 1)))


def _tags(settings: Settings, what: str) -> dict[str, str]:
    return {"Name": f"{PROJECT}-{settings.stack}-{what}", "Project": PROJECT, "Stack": settings.stack}


def _elb_name(name: str) -> str:
    if len(name) > _ELB_NAME_MAX:
        raise ValueError(
            f"load balancer or target group name {name!r} has {len(name)} characters; AWS allows "
            f"{_ELB_NAME_MAX} before Pulumi's random suffix: give the component a shorter name"
        )
    return name


# What the API load balancer asks each server before sending it traffic: the agent serving, not merely
# its port open. Both answer without a token or a client certificate; anything but 200 is unhealthy.
HEALTH_CHECKS = {
    # 200 once the server knows a leader, 500 otherwise (hashicorp/nomad v1.10.3
    # command/agent/agent_endpoint.go HealthRequest; no ACL; verify_https_client = false).
    NOMAD_HTTP_PORT: "/v1/agent/health?type=server",
    # 200 active or (standbyok) standby; 501 uninitialised, 503 sealed, 429 never asked for
    # (hashicorp/vault http/sys_health.go getSysHealth).
    VAULT_API_PORT: "/v1/sys/health?standbyok=true",
    # Consul: TCP only. Its servers' HTTPS API requires a client certificate (verify_incoming), which
    # a load balancer's health check cannot present.
}


def _health_check(port: int) -> aws.lb.TargetGroupHealthCheckArgs:
    path = HEALTH_CHECKS.get(port)
    if path is None:
        return aws.lb.TargetGroupHealthCheckArgs(protocol="TCP", port="traffic-port")
    return aws.lb.TargetGroupHealthCheckArgs(protocol="HTTPS", port="traffic-port", path=path, matcher="200")


def _tcp_forward(
    prefix: str,
    settings: Settings,
    balancer: aws.lb.LoadBalancer,
    port: int,
    target_type: str,
    vpc_id: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> aws.lb.TargetGroup:
    """A TCP listener on `port` forwarding to a new target group on the same port (TLS stays end to end)."""
    what = f"{prefix.rsplit('-', 1)[-1]}-{port}"
    target_group = aws.lb.TargetGroup(
        _elb_name(f"{prefix}-{port}"),
        port=port,
        protocol="TCP",
        target_type=target_type,
        vpc_id=vpc_id,
        health_check=_health_check(port),
        deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
        connection_termination=True,
        tags=_tags(settings, what),
        opts=opts,
    )
    aws.lb.Listener(
        f"{prefix}-{port}",
        load_balancer_arn=balancer.arn,
        port=port,
        protocol="TCP",
        default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)],
        tags=_tags(settings, what),
        opts=opts,
    )
    return target_group


class AwsPreflightError(pulumi.RunError):
    """The account or region cannot hold the stack's shape: said before anything is created."""


# Service Quotas code of "EC2-VPC Elastic IPs" (default 5 per region): AWS docs, Amazon EC2 Elastic IP
# addresses, "Elastic IP address quota".
ELASTIC_IP_QUOTA_CODE = "L-0263D0A3"


def availability_zones(settings: Settings) -> list[str]:
    """One zone per subnet, in the region's order, among the zones every account has: Local and
    Wavelength Zones need an opt-in (their opt-in-status is not "opt-in-not-required"), and a load
    balancer takes one subnet per zone. Refuses a region with fewer such zones than subnets."""
    zones = aws.get_availability_zones(
        state="available",
        filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])],
    ).names
    wanted = len(settings.aws.subnet_cidrs)
    if len(zones) < wanted:
        raise AwsPreflightError(
            f"subnetCidrs: {wanted} subnets need {wanted} availability zones, and {settings.aws.region} offers "
            f"{len(zones)} ({', '.join(zones) or 'none'}) to this account: give as many subnets as zones, or "
            "choose another region"
        )
    return list(zones[:wanted])


def check_elastic_ip_quota(settings: Settings, log=pulumi.log.warn) -> None:
    """Stops before anything is created when the servers' Elastic IPs would exceed the region's
    quota, counting the addresses this stack already holds as its own. An identity that may not read
    the quota (servicequotas:GetServiceQuota) is warned, not stopped."""
    try:
        quota = aws.servicequotas.get_service_quota(quota_code=ELASTIC_IP_QUOTA_CODE, service_code="ec2").value
        every = len(aws.ec2.get_eips().allocation_ids)
        own = len(aws.ec2.get_eips(tags={"Project": PROJECT, "Stack": settings.stack}).allocation_ids)
    except Exception as error:  # any failure of the lookups only skips the check
        log(f"could not check the Elastic IP quota in {settings.aws.region} ({error}); going on")
        return
    needed = settings.server_count
    if every - own + needed > quota:
        raise AwsPreflightError(
            f"serverCount: {needed} servers need {needed} Elastic IPs in {settings.aws.region}; the quota is "
            f"{quota:g} and {every - own} are taken by other stacks or tools. Release some, or ask for more "
            f"(Service Quotas, EC2, {ELASTIC_IP_QUOTA_CODE}: `aws service-quotas request-service-quota-increase "
            f"--service-code ec2 --quota-code {ELASTIC_IP_QUOTA_CODE} --desired-value {every - own + needed}`)"
        )


class AwsNetwork(pulumi.ComponentResource):
    servers: list[ServerAddress]
    """Every server's private (ENI) and public (Elastic IP) address, in server order."""
    api_dns_names: pulumi.Output[list[str]]
    """The API load balancer's DNS name, which every server certificate carries."""
    api_dns_name: pulumi.Output[str]
    """DNS name of the API load balancer (Nomad 4646, Consul 8501, Vault 8200)."""
    vpc_id: pulumi.Output[str]
    """The stack's VPC."""
    subnet_ids: list[pulumi.Output[str]]
    """Public subnets, one per availability zone; known once they route to the internet."""
    server_security_group_id: pulumi.Output[str]
    """Security group of the server ENIs."""
    client_security_group_id: pulumi.Output[str]
    """Security group of the clients."""
    ingress_lb_security_group_id: pulumi.Output[str]
    """Security group of the ingress load balancer, the only one open to the internet."""
    server_interface_ids: dict[str, pulumi.Output[str]]
    """Server name -> its ENI, known once its Elastic IP is attached."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        settings = args.settings
        # Before anything exists: what the account and region cannot hold stops here.
        zones = availability_zones(settings)
        check_elastic_ip_quota(settings)
        super().__init__("hashistack:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(settings.network_cidr),
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=_tags(settings, "vpc"),
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=_tags(settings, "igw"), opts=child)
        routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block=WORLD_IPV4, gateway_id=gateway.id)],
            tags=_tags(settings, "public"),
            opts=child,
        )
        self.subnet_ids = []
        for i, cidr in enumerate(settings.aws.subnet_cidrs):
            subnet = aws.ec2.Subnet(
                f"{name}-subnet-{i}",
                vpc_id=vpc.id,
                cidr_block=str(cidr),
                # One zone each: a load balancer takes one subnet per zone.
                availability_zone=zones[i],
                tags=_tags(settings, f"subnet-{i}"),
                opts=child,
            )
            association = aws.ec2.RouteTableAssociation(
                f"{name}-subnet-{i}", subnet_id=subnet.id, route_table_id=routes.id, opts=child
            )
            # Read through the association: whatever is placed in the subnet (nodes, load balancers)
            # waits until the subnet routes to the internet, where cloud-init fetches packages at boot.
            self.subnet_ids.append(association.subnet_id)

        groups = {
            "servers": "hashistack servers: Consul, Nomad and Vault",
            "clients": "hashistack clients: Nomad workloads",
            "api-lb": "hashistack API load balancer",
            "ingress-lb": "hashistack ingress load balancer",
        }
        sg = {
            key: aws.ec2.SecurityGroup(
                f"{name}-{key}", vpc_id=vpc.id, description=text, tags=_tags(settings, key), opts=child
            )
            for key, text in groups.items()
        }
        self._rules(name, settings, sg)

        self.servers = []
        self.server_interface_ids = {}
        for planned in planned_servers(settings):
            interface = aws.ec2.NetworkInterface(
                f"{name}-{planned.name}",
                subnet_id=self.subnet_ids[planned.subnet_index],
                private_ips=[planned.private_ip],
                security_groups=[sg["servers"].id],
                description=f"{PROJECT} {settings.stack} {planned.name}: fixed address of the server",
                tags=_tags(settings, planned.name),
                opts=child,
            )
            address = aws.ec2.Eip(
                f"{name}-{planned.name}",
                domain="vpc",
                network_interface=interface.id,
                tags=_tags(settings, planned.name),
                # AWS refuses to associate an Elastic IP in a VPC without an internet gateway, and
                # nothing in the inputs says that the gateway must come first.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
            )
            self.servers.append(ServerAddress(planned.name, interface.private_ip, address.public_ip))
            # Through the Elastic IP: a server boots once it has its public address (for apt).
            self.server_interface_ids[planned.name] = address.network_interface

        api = aws.lb.LoadBalancer(
            _elb_name(f"{name}-api"),
            load_balancer_type="network",
            internal=False,
            subnets=self.subnet_ids,
            security_groups=[sg["api-lb"].id],
            enable_cross_zone_load_balancing=True,
            tags=_tags(settings, "api"),
            opts=child,
        )
        for port in API_PORTS:
            # "ip" targets: the servers' fixed private addresses, known before any instance exists.
            target_group = _tcp_forward(f"{name}-api", settings, api, port, "ip", vpc.id, child)
            for server in self.servers:
                aws.lb.TargetGroupAttachment(
                    f"{name}-api-{port}-{server.name}",
                    target_group_arn=target_group.arn,
                    target_id=server.private_ip,
                    port=port,
                    opts=child,
                )

        self.api_dns_name = api.dns_name
        self.api_dns_names = api.dns_name.apply(lambda dns: [dns])
        self.vpc_id = vpc.id
        self.server_security_group_id = sg["servers"].id
        self.client_security_group_id = sg["clients"].id
        self.ingress_lb_security_group_id = sg["ingress-lb"].id
        self.register_outputs({"vpc_id": self.vpc_id, "api_dns_name": self.api_dns_name})

    def _rules(self, name: str, settings: Settings, sg: dict[str, aws.ec2.SecurityGroup]) -> None:
        """Every port a security group admits, one rule resource each, so a change touches one rule."""
        allowed = list(settings.aws.api_allowed_cidrs)
        # (group, protocol, first port, last port, source: a group key or a CIDR)
        rules: list[tuple[str, str, int, int, object]] = []

        def allow(group: str, protocols: tuple[str, ...], ports: tuple[int, int], sources: list) -> None:
            rules.extend((group, protocol, *ports, source) for protocol in protocols for source in sources)

        nodes = ["servers", "clients"]
        for port, protocols, group, sources in (
            (CONSUL_SERF_LAN_PORT, ("tcp", "udp"), "servers", nodes),
            (CONSUL_SERF_LAN_PORT, ("tcp", "udp"), "clients", nodes),
            (CONSUL_RPC_PORT, ("tcp",), "servers", nodes),
            (NOMAD_RPC_PORT, ("tcp",), "servers", nodes),
            (NOMAD_SERF_PORT, ("tcp", "udp"), "servers", ["servers"]),
            (VAULT_API_PORT, ("tcp",), "servers", nodes),
            (VAULT_CLUSTER_PORT, ("tcp",), "servers", ["servers"]),
            # Servers reach clients for log streaming and `nomad alloc exec`; Prometheus, a job on a
            # client, scrapes every Nomad agent's /v1/metrics (jobs/prometheus.nomad.hcl), and a
            # migrating allocation's data moves from client to client over the same API.
            (NOMAD_HTTP_PORT, ("tcp",), "clients", ["servers", "clients"]),
            (NOMAD_HTTP_PORT, ("tcp",), "servers", ["clients"]),
            (SSH_PORT, ("tcp",), "servers", allowed),
            (SSH_PORT, ("tcp",), "clients", allowed),
        ):
            allow(group, protocols, (port, port), sources)
        for port in API_PORTS:
            # The load balancer for everyone allowed; the allowed ranges directly too, because the
            # operator's CLI and the program's health checks address each server's Elastic IP.
            allow("servers", ("tcp",), (port, port), ["api-lb", *allowed])
            allow("api-lb", ("tcp",), (port, port), allowed)
        allow("clients", ("tcp", "udp"), DYNAMIC_PORTS, ["clients"])
        for port in INGRESS_PORTS:
            allow("clients", ("tcp",), (port, port), ["ingress-lb"])
            # WARNING: the only rules open to the whole internet, by design: the ingress serves the jobs.
            # IPv4 only: the load balancer has no IPv6 address (ip_address_type "ipv4"), so an ::/0 rule
            # would admit nothing.
            allow("ingress-lb", ("tcp",), (port, port), [WORLD_IPV4])

        child = pulumi.ResourceOptions(parent=self)
        for group, protocol, first, last, source in rules:
            ports = str(first) if first == last else f"{first}-{last}"
            if isinstance(source, str) and source in sg:
                label, peer = source, {"referenced_security_group_id": sg[source].id}
            else:
                cidr = str(source)
                label = "world" if cidr == WORLD_IPV4 else f"allowed{allowed.index(source)}"
                label += "-v6" if ":" in cidr else ""
                peer = {"cidr_ipv6": cidr} if ":" in cidr else {"cidr_ipv4": cidr}
            rule = f"{group}-{protocol}-{ports}-from-{label}"
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-{rule}",
                security_group_id=sg[group].id,
                ip_protocol=protocol,
                from_port=first,
                to_port=last,
                description=f"{protocol}/{ports} from {label}",
                tags=_tags(settings, rule),
                opts=child,
                **peer,
            )

        # Nodes install packages and call AWS APIs (SSM, EC2, KMS) over the internet.
        for group in nodes:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{group}-egress",
                security_group_id=sg[group].id,
                ip_protocol="-1",
                cidr_ipv4=WORLD_IPV4,
                description="all outbound",
                tags=_tags(settings, f"{group}-egress"),
                opts=child,
            )
        # The load balancers talk to their targets on the listener ports, nothing else.
        for group, target, ports in (("api-lb", "servers", API_PORTS), ("ingress-lb", "clients", INGRESS_PORTS)):
            for port in ports:
                aws.vpc.SecurityGroupEgressRule(
                    f"{name}-{group}-tcp-{port}-to-{target}",
                    security_group_id=sg[group].id,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    referenced_security_group_id=sg[target].id,
                    description=f"tcp/{port} to {target}",
                    tags=_tags(settings, f"{group}-tcp-{port}-to-{target}"),
                    opts=child,
                )


class AwsNodes(pulumi.ComponentResource):
    servers: dict[str, pulumi.Output[str]]
    """Server name -> its Elastic IP."""
    clients: pulumi.Output[dict]
    """The clients' autoscaling group: {"autoscalingGroup": name, "size": clientCount}."""
    api_endpoint: pulumi.Output[str]
    """DNS name of the API load balancer: Nomad 4646, Consul 8501 and Vault 8200."""
    ingress_endpoint: pulumi.Output[str]
    """DNS name of the ingress load balancer (80/443 to the clients)."""
    """The ingress load balancer's fixed public addresses, one per availability zone."""
    server_health: list[ServerHealth]
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
        super().__init__("hashistack:aws:Nodes", name, None, opts)
        settings, network, secrets = args.settings, args.network, args.secrets
        self._name, self._settings = name, settings
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        cluster = cluster_spec(settings)
        nodes = node_specs(settings)

        key = aws.kms.Key(
            f"{name}-vault-seal",
            description=f"{PROJECT} stack {settings.stack}: Vault auto-unseal",
            enable_key_rotation=True,
            deletion_window_in_days=KMS_DELETION_WINDOW_DAYS,
            tags=_tags(settings, "vault-seal"),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-vault-seal", name=f"alias/{PROJECT}-{settings.stack}-vault", target_key_id=key.id, opts=child
        )
        identity = aws.get_caller_identity_output(opts=invoke)
        partition = aws.get_partition_output(opts=invoke)
        self._parameter_arn_prefix = pulumi.Output.concat(
            "arn:", partition.partition, ":ssm:", settings.aws.region, ":", identity.account_id, ":parameter"
        )
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

        # Roles first (the key of the secrets names them), then the key, then each node's secrets under
        # it: a node reads them at boot, though nothing it is given names them.
        client = nodes["client"]
        roles = {
            ssm_scope(node): self._role(node) for node in (*(nodes[p.name] for p in planned_servers(settings)), client)
        }
        secrets_key = self._secrets_key(roles, identity, partition)
        servers = {}
        for planned in planned_servers(settings):
            node = nodes[planned.name]
            material = material_for(secrets, Role.SERVER, secrets.servers[planned.name])
            role, profile = roles[ssm_scope(node)]
            boot_needs = self._secrets(node, cluster, material, role, secrets_key, vault_key_arn=key.arn)
            servers[planned.name] = (node, material, profile, boot_needs)

        def create_server(planned: PlannedServer, server_opts: pulumi.ResourceOptions) -> aws.ec2.Instance:
            node, material, profile, boot_needs = servers[planned.name]
            text = user_data(cluster, node, material, kms_key_id=key.arn)
            return aws.ec2.Instance(
                f"{name}-{planned.name}",
                ami=image.id,
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
                    tags=_tags(settings, planned.name),
                ),
                user_data_base64=text.apply(ec2_user_data_base64),
                # New user-data means a new server (through the chain), never a half-applied reboot.
                user_data_replace_on_change=True,
                tags={**_tags(settings, planned.name), JOIN_TAG_KEY: join_tag_value(settings)},
                # A newer Ubuntu image would otherwise replace every server on the next `up`. Roll the
                # servers onto it deliberately with `pulumi up --replace <instance URN>` (several
                # URNs at once are safe: the chain still replaces one server at a time).
                opts=pulumi.ResourceOptions.merge(
                    server_opts, pulumi.ResourceOptions(ignore_changes=["ami"], depends_on=boot_needs)
                ),
            )

        chain = chain_servers(
            name,
            settings,
            reachable_ips(network),
            secrets,
            self,
            create_server,
            # The boot script's last line is on the serial console (cloudinit/hashistack-bootstrap.sh).
            console_command=lambda machine: pulumi.Output.concat(
                "aws ec2 get-console-output --latest --output text --region ",
                settings.aws.region,
                " --instance-id ",
                machine.id,
            ),
        )
        self.server_health, self.vault_init = chain.gates, chain.vault_init

        client_material = material_for(secrets, Role.CLIENT, secrets.client)
        client_role, client_profile = roles[ssm_scope(client)]
        client_boot_needs = self._secrets(
            client, cluster, client_material, client_role, secrets_key, vault_key_arn=None
        )
        template = aws.ec2.LaunchTemplate(
            f"{name}-client",
            description=f"{PROJECT} {settings.stack} client",
            image_id=image.id,
            instance_type=settings.aws.client_instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=client_profile.arn),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                **_IMDS, http_put_response_hop_limit=_IMDS_HOP_LIMIT
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=image.root_device_name,
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
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=_tags(settings, "client"))
                for kind in ("volume", "network-interface")
            ],
            update_default_version=True,
            tags=_tags(settings, "client"),
            # As for the servers: a newer image rolls the clients only when asked, with
            # `pulumi up --replace <launch template URN>` (the instance refresh below does the rest).
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["image_id"]),
        )

        ingress_targets = []
        ingress = aws.lb.LoadBalancer(
            _elb_name(f"{name}-ingress"),
            load_balancer_type="network",
            internal=False,
            # No Elastic IPs: an account has 5 per region by default and the servers need theirs
            # (ELASTIC_IP_QUOTA_CODE). AWS gives a network load balancer one static address per
            # zone anyway; reach it by its DNS name (ingressEndpoint).
            subnets=network.subnet_ids,
            security_groups=[network.ingress_lb_security_group_id],
            enable_cross_zone_load_balancing=True,
            tags=_tags(settings, "ingress"),
            opts=child,
        )
        for port in INGRESS_PORTS:
            target_group = _tcp_forward(f"{name}-ingress", settings, ingress, port, "instance", network.vpc_id, child)
            ingress_targets.append(target_group)

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
                for k, v in _tags(settings, "client").items()
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=client_boot_needs),
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

        self.servers = {s.name: s.public_ip for s in network.servers}
        self.clients = pulumi.Output.from_input({"autoscalingGroup": group.name, "size": settings.client_count})
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

    def _role(self, node: NodeSpec) -> tuple[aws.iam.Role, aws.iam.InstanceProfile]:
        """The instance role of a server, or of every client, and its instance profile."""
        name, settings = self._name, self._settings
        child = pulumi.ResourceOptions(parent=self)
        scope = ssm_scope(node)
        role = aws.iam.Role(
            f"{name}-{scope}",
            description=f"{PROJECT} {settings.stack} {scope}",
            assume_role_policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            tags=_tags(settings, scope),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-{scope}", role=role.name, tags=_tags(settings, scope), opts=child)
        return role, profile

    def _secrets_key(
        self,
        roles: dict[str, tuple[aws.iam.Role, aws.iam.InstanceProfile]],
        identity: pulumi.Output,
        partition: pulumi.Output,
    ) -> aws.kms.Key:
        """The stack's own key for its SSM parameters. With the account's aws/ssm key any principal of
        the account allowed to read a parameter could decrypt it; this key's policy lets the account
        administer it (never lock it: refresh and destroy keep working) but decrypt nothing, the
        deploying role encrypt and decrypt through SSM, and each node role decrypt its own parameters
        only: SSM passes the parameter's ARN as encryption context (AWS docs, "How AWS Systems Manager
        Parameter Store uses AWS KMS": kms:EncryptionContext:PARAMETER_ARN)."""
        name, settings = self._name, self._settings
        invoke = pulumi.InvokeOutputOptions(parent=self)
        # An assumed role's session ARN changes with every session: the key names the role itself.
        deployer = aws.iam.get_session_context_output(arn=identity.arn, opts=invoke).issuer_arn
        ssm_service = pulumi.Output.concat("ssm.", settings.aws.region, ".", partition.dns_suffix)
        account_root = pulumi.Output.concat("arn:", partition.partition, ":iam::", identity.account_id, ":root")
        statements: list = [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": account_root},
                "Action": list(KMS_ADMINISTRATION),
                "Resource": "*",
            },
            {
                "Sid": "DeployerThroughSsm",
                "Effect": "Allow",
                "Principal": {"AWS": deployer},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": ssm_service}},
            },
        ]
        for scope, (role, _profile) in roles.items():
            statements.append(
                {
                    "Sid": f"{scope.replace('-', '').capitalize()}ReadsItsOwn",
                    "Effect": "Allow",
                    "Principal": {"AWS": role.arn},
                    "Action": "kms:Decrypt",
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {"kms:ViaService": ssm_service},
                        "StringLike": {"kms:EncryptionContext:PARAMETER_ARN": self._parameters_of(scope)},
                    },
                }
            )
        key = aws.kms.Key(
            f"{name}-secrets",
            description=f"{PROJECT} stack {settings.stack}: the nodes' secrets in SSM Parameter Store",
            enable_key_rotation=True,
            deletion_window_in_days=KMS_DELETION_WINDOW_DAYS,
            policy=pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements}),
            tags=_tags(settings, "secrets"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.kms.Alias(
            f"{name}-secrets",
            name=f"alias/{PROJECT}-{settings.stack}-secrets",
            target_key_id=key.id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return key

    def _parameters_of(self, scope: str) -> pulumi.Output[str]:
        return pulumi.Output.concat(self._parameter_arn_prefix, f"{ssm_prefix(self._settings)}/{scope}/*")

    def _secrets(
        self,
        node: NodeSpec,
        cluster: ClusterSpec,
        material: NodeMaterialInputs,
        role: aws.iam.Role,
        secrets_key: aws.kms.Key,
        vault_key_arn: pulumi.Output[str] | None,
    ) -> list[pulumi.Resource]:
        """What must exist before a node boots: its secrets, under the stack's key, and its policy."""
        name, settings = self._name, self._settings
        child = pulumi.ResourceOptions(parent=self)
        scope = ssm_scope(node)
        parameters = [
            aws.ssm.Parameter(
                f"{name}-{scope}-{parameter.rsplit('/', 1)[1]}",
                name=parameter,
                type="SecureString",
                key_id=secrets_key.arn,
                value=value,
                description=f"{PROJECT} {settings.stack} {scope}: fetched by the node at boot",
                tags=_tags(settings, f"{scope}-{parameter.rsplit('/', 1)[1]}"),
                opts=child,
            )
            for parameter, value in secret_parameters(cluster, node, material).items()
        ]
        statements = [
            # DescribeInstances supports no resource-level permissions: "*" is the only resource it
            # accepts. Cloud auto-join needs it to find the servers by tag.
            {"Sid": "CloudAutoJoin", "Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": "*"},
            {
                "Sid": "OwnSecrets",
                "Effect": "Allow",
                "Action": ["ssm:GetParameters"],
                "Resource": self._parameters_of(scope),
            },
        ]
        if vault_key_arn is not None:
            statements.append(
                {
                    "Sid": "VaultAutoUnseal",
                    "Effect": "Allow",
                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
                    "Resource": vault_key_arn,
                }
            )
        policy = aws.iam.RolePolicy(
            f"{name}-{scope}",
            role=role.id,
            policy=pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements}),
            opts=child,
        )
        return [policy, *parameters]
