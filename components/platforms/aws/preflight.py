"""What the account and region must offer before anything is created: opt-in-free availability zones,
one per subnet, and room in the Elastic IP quota for the servers' addresses. AwsNetwork asks first, so
a stack that cannot fit stops with a message rather than halfway through an `up`."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.config.settings import PROJECT, Settings


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
