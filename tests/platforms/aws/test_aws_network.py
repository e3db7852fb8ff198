"""AwsNetwork (components/platforms/aws/network.py) under mocks: the servers' fixed addresses, which their
certificates name with the API load balancer's DNS name."""

from __future__ import annotations

import ipaddress

import pytest
from aws_program import INSTANCE, NAME, SERVERS, STACK, preview

from scripts.stack_files import stack_settings

from conftest import unwrap


@pytest.fixture(scope="module")
def monitor():
    return preview()


def test_servers_boot_on_their_fixed_interfaces(monitor):
    settings = stack_settings(STACK)
    subnets = {r.id: unwrap(r.inputs)["cidrBlock"] for r in monitor.of_type("aws:ec2/subnet:Subnet")}
    for i, node in enumerate(SERVERS):
        interface = monitor.one("aws:ec2/networkInterface:NetworkInterface", f"{NAME}-{node}")
        inputs = unwrap(interface.inputs)
        assert ipaddress.ip_address(inputs["privateIps"][0]) in ipaddress.ip_network(subnets[inputs["subnetId"]])
        assert subnets[inputs["subnetId"]] == str(settings.aws.subnet_cidrs[i % len(settings.aws.subnet_cidrs)])
        address = monitor.one("aws:ec2/eip:Eip", f"{NAME}-{node}")
        assert address.inputs["networkInterface"] == interface.id, address.urn
        instance = monitor.one(INSTANCE, f"{NAME}-{node}")
        assert instance.inputs["primaryNetworkInterface"]["networkInterfaceId"] == interface.id, instance.urn


def test_server_certificates_name_the_load_balancer_and_both_addresses(monitor):
    api = monitor.one("aws:lb/loadBalancer:LoadBalancer", f"{NAME}-api")
    dns_name = api.outputs["dnsName"]
    for node in SERVERS:
        request = unwrap(monitor.one("tls:index/certRequest:CertRequest", f"{NAME}-{node}").inputs)
        assert dns_name in request["dnsNames"], node
        private_ip = monitor.one("aws:ec2/networkInterface:NetworkInterface", f"{NAME}-{node}").outputs["privateIp"]
        public_ip = monitor.one("aws:ec2/eip:Eip", f"{NAME}-{node}").outputs["publicIp"]
        assert {private_ip, public_ip} <= set(request["ipAddresses"]), node
