"""AwsNetwork: the VPC of public subnets, one per availability zone, the security groups, each
server's fixed ENI and Elastic IP, and the API load balancer.

A server's ENI and Elastic IP exist before its certificate (DESIGN decision 1), so a replaced server
comes back with the same addresses and the same certificate names.

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

from components.config.addressing import planned_servers
from components.config.settings import PROJECT
from components.platforms.aws.firewall import WORLD_IPV4, security_groups
from components.platforms.aws.load_balancers import api_load_balancer
from components.platforms.aws.preflight import availability_zones, check_elastic_ip_quota
from components.platforms.aws.tags import stack_tags
from components.platforms.shape import NetworkArgs, ServerAddress


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
            tags=stack_tags(settings, "vpc"),
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=stack_tags(settings, "igw"), opts=child)
        routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block=WORLD_IPV4, gateway_id=gateway.id)],
            tags=stack_tags(settings, "public"),
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
                tags=stack_tags(settings, f"subnet-{i}"),
                opts=child,
            )
            association = aws.ec2.RouteTableAssociation(
                f"{name}-subnet-{i}", subnet_id=subnet.id, route_table_id=routes.id, opts=child
            )
            # Read through the association: whatever is placed in the subnet (nodes, load balancers)
            # waits until the subnet routes to the internet, where cloud-init fetches packages at boot.
            self.subnet_ids.append(association.subnet_id)

        sg = security_groups(name, settings, vpc.id, child)

        self.servers = []
        self.server_interface_ids = {}
        for planned in planned_servers(settings):
            interface = aws.ec2.NetworkInterface(
                f"{name}-{planned.name}",
                subnet_id=self.subnet_ids[planned.subnet_index],
                private_ips=[planned.private_ip],
                security_groups=[sg["servers"].id],
                description=f"{PROJECT} {settings.stack} {planned.name}: fixed address of the server",
                tags=stack_tags(settings, planned.name),
                opts=child,
            )
            address = aws.ec2.Eip(
                f"{name}-{planned.name}",
                domain="vpc",
                network_interface=interface.id,
                tags=stack_tags(settings, planned.name),
                # AWS refuses to associate an Elastic IP in a VPC without an internet gateway, and
                # nothing in the inputs says that the gateway must come first.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
            )
            self.servers.append(ServerAddress(planned.name, interface.private_ip, address.public_ip))
            # Through the Elastic IP: a server boots once it has its public address (for apt).
            self.server_interface_ids[planned.name] = address.network_interface

        api = api_load_balancer(name, settings, self.subnet_ids, sg["api-lb"].id, vpc.id, self.servers, child)

        self.api_dns_name = api.dns_name
        self.api_dns_names = api.dns_name.apply(lambda dns: [dns])
        self.vpc_id = vpc.id
        self.server_security_group_id = sg["servers"].id
        self.client_security_group_id = sg["clients"].id
        self.ingress_lb_security_group_id = sg["ingress-lb"].id
        self.register_outputs({"vpc_id": self.vpc_id, "api_dns_name": self.api_dns_name})
