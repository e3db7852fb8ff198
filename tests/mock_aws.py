"""AWS mock answers: the aws stack's region, a made-up account, and ids, ARNs and names shaped as the
provider shapes them; distinct per resource (derived from its name) so a leak or a mix-up names itself."""

from __future__ import annotations

import hashlib
from typing import Any


def digest(name: str, salt: str) -> bytes:
    """Stable bytes per (resource, purpose): mock values that differ between resources."""
    return hashlib.sha256(f"{salt}:{name}".encode()).digest()


AWS_REGION = "eu-central-1"
AWS_ACCOUNT = "123456789012"
AWS_AMI = "ami-0123456789abcdef0"


IMAGEBUILDER_KINDS = {
    "aws:imagebuilder/component:Component": "component",
    "aws:imagebuilder/imageRecipe:ImageRecipe": "image-recipe",
    "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration": "infrastructure-configuration",
}
AWS_ROUTE_TABLE = "rtb-0123456789abcdef0"


def baked_ami(name: str) -> str:
    """The AMI the mock Image Builder image `name` outputs (not the stock AWS_AMI)."""
    return f"ami-{digest(name, 'baked-ami').hex()[:17]}"


def _arn(service: str, resource: str, region: str = AWS_REGION) -> str:
    return f"arn:aws:{service}:{region}:{AWS_ACCOUNT}:{resource}"


def aws_outputs(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    h = digest(name, typ).hex()
    if typ == "aws:kms/key:Key":
        key_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        return {"arn": _arn("kms", f"key/{key_id}"), "keyId": key_id}
    if typ == "aws:kms/alias:Alias":
        return {"arn": _arn("kms", inputs.get("name", f"alias/{name}"))}
    if typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
        kind = "role" if typ.endswith("Role") else "instance-profile"
        physical = f"{name}-{h[:7]}"  # Pulumi's auto-name
        return {
            "arn": _arn("iam", f"{kind}/{physical}", region=""),
            "name": physical,
            "uniqueId": f"AROA{h[:17].upper()}",
        }
    if typ == "aws:lb/loadBalancer:LoadBalancer":
        physical = f"{name}-{h[:7]}"
        return {
            "arn": _arn("elasticloadbalancing", f"loadbalancer/net/{physical}/{h[7:23]}"),
            "dnsName": f"{physical}-{h[23:33]}.elb.{AWS_REGION}.amazonaws.com",
            "name": physical,
        }
    if typ == "aws:lb/targetGroup:TargetGroup":
        return {"arn": _arn("elasticloadbalancing", f"targetgroup/{name}-{h[:7]}/{h[7:23]}")}
    if typ == "aws:lb/listener:Listener":
        return {"arn": _arn("elasticloadbalancing", f"listener/net/{name}/{h[:16]}/{h[16:32]}")}
    if typ == "aws:ec2/networkInterface:NetworkInterface":
        return {
            "privateIp": (inputs.get("privateIps") or ["10.0.0.4"])[0],
            "macAddress": f"02:{h[0:2]}:{h[2:4]}:{h[4:6]}:{h[6:8]}:{h[8:10]}",
        }
    if typ == "aws:ec2/eip:Eip":
        # TEST-NET-3 (RFC 5737), apart from the aws stack's apiAllowedCidrs (TEST-NET-2).
        last = 1 + int(h[:8], 16) % 254
        return {
            "publicIp": f"203.0.113.{last}",
            "allocationId": f"eipalloc-{h[:17]}",
            "publicDns": f"ec2-203-0-113-{last}.{AWS_REGION}.compute.amazonaws.com",
        }
    if typ == "aws:ec2/launchTemplate:LaunchTemplate":
        return {"arn": _arn("ec2", f"launch-template/lt-{h[:17]}"), "latestVersion": 1, "defaultVersion": 1}
    if typ == "aws:autoscaling/group:Group":
        physical = f"{name}-{h[:7]}"
        return {
            "arn": _arn("autoscaling", f"autoScalingGroup:{h[7:15]}:autoScalingGroupName/{physical}"),
            "name": physical,
        }
    if typ == "aws:ssm/parameter:Parameter":
        return {"arn": _arn("ssm", f"parameter{inputs.get('name', '/' + name)}"), "version": 1}
    if typ == "aws:ec2/instance:Instance":
        return {"arn": _arn("ec2", f"instance/i-{h[:17]}"), "primaryNetworkInterfaceId": f"eni-{h[17:34]}"}
    # The baked image (components/platforms/aws/baked_image.py): the bucket's auto-name, the Image
    # Builder ARNs, and the image's AMI as the provider reports it (outputResources[].amis[].image).
    if typ == "aws:s3/bucket:Bucket":
        physical = inputs.get("bucket") or f"{name}-{h[:7]}"
        return {"bucket": physical, "arn": f"arn:aws:s3:::{physical}"}
    if typ in IMAGEBUILDER_KINDS:
        kind = IMAGEBUILDER_KINDS[typ]
        named = inputs.get("name", name)
        version = (
            f"/{inputs['version']}/1" if kind == "component" else f"/{inputs['version']}" if "version" in inputs else ""
        )
        return {"arn": _arn("imagebuilder", f"{kind}/{named.lower()}{version}")}
    if typ == "aws:imagebuilder/image:Image":
        ami = baked_ami(name)
        return {
            "arn": _arn("imagebuilder", f"image/{name}/1.0.0/1"),
            "outputResources": [{"amis": [{"image": ami, "region": AWS_REGION, "accountId": AWS_ACCOUNT}]}],
        }
    if typ in ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/securityGroup:SecurityGroup"):
        kind = typ.rsplit(":", 1)[1].lower().replace("securitygroup", "security-group")
        return {"arn": _arn("ec2", f"{kind}/{name}-id"), "ownerId": AWS_ACCOUNT}
    return {}


def aws_call(token: str) -> dict[str, Any] | None:
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return {
            "id": AWS_REGION,
            "names": [f"{AWS_REGION}{zone}" for zone in "abc"],
            "zoneIds": ["euc1-az2", "euc1-az3", "euc1-az1"],
            "groupNames": [AWS_REGION],
        }
    if token == "aws:ec2/getAmi:getAmi":
        return {
            "id": AWS_AMI,
            "imageId": AWS_AMI,
            "name": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250610",
            "ownerId": "099720109477",
            "architecture": "x86_64",
            "virtualizationType": "hvm",
            "rootDeviceName": "/dev/sda1",
            "rootDeviceType": "ebs",
        }
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "id": AWS_ACCOUNT,
            "accountId": AWS_ACCOUNT,
            "arn": f"arn:aws:iam::{AWS_ACCOUNT}:user/ci",
            "userId": "AIDAJQABLZS4A3QDU576Q",
        }
    if token == "aws:servicequotas/getServiceQuota:getServiceQuota":
        # A fresh account's default (AWS docs: 5 Elastic IPs per region).
        return {"id": "ec2/L-0263D0A3", "quotaCode": "L-0263D0A3", "serviceCode": "ec2", "value": 5.0}
    if token == "aws:ec2/getEips:getEips":
        return {"id": AWS_REGION, "allocationIds": [], "publicIps": []}
    if token == "aws:iam/getSessionContext:getSessionContext":
        # The deploying identity as CI assumes it (aws/aws-sdk: sts AssumeRole session ARNs).
        return {
            "id": "ci",
            "arn": f"arn:aws:sts::{AWS_ACCOUNT}:assumed-role/hashistack-deploy/ci-run-1",
            "issuerArn": f"arn:aws:iam::{AWS_ACCOUNT}:role/hashistack-deploy",
            "issuerId": "AROAEXAMPLE",
            "issuerName": "hashistack-deploy",
            "sessionName": "ci-run-1",
        }
    if token == "aws:ec2/getRouteTable:getRouteTable":
        return {"id": AWS_ROUTE_TABLE, "routeTableId": AWS_ROUTE_TABLE, "vpcId": "cluster-vpc-id", "routes": []}
    if token == "aws:index/getPartition:getPartition":
        return {"id": "aws", "partition": "aws", "dnsSuffix": "amazonaws.com", "reverseDnsPrefix": "com.amazonaws"}
    return None
