"""The baked AMI under mocks (components/platforms/aws/baked_image.py, wired in nodes.py): nothing of it on a
stock stack; with nodeImage `baked`, an EC2 Image Builder image of the recipe (components/nodes/node_image.py)
over the stock AMI, which the servers and the client launch template boot and follow.

AWS documentation each assumption was checked in:
  [setup]    https://docs.aws.amazon.com/imagebuilder/latest/userguide/image-builder-setting-up.html
             (the instance profile's policies EC2InstanceProfileForImageBuilder and AmazonSSMManagedInstanceCore;
             on Linux, Image Builder installs SSM Agent when the parent image lacks it)
  [os]       https://docs.aws.amazon.com/imagebuilder/latest/userguide/what-is-image-builder.html#image-builder-os
             (supported operating systems: Ubuntu 24.04 is one, Debian none)
  [managed]  https://docs.aws.amazon.com/imagebuilder/latest/userguide/security-iam-awsmanpol.html
             (EC2InstanceProfileForImageBuilder reads S3 objects only in buckets named ec2imagebuilder-*)
  [create]   https://docs.aws.amazon.com/imagebuilder/latest/APIReference/API_CreateComponent.html
             (`data`: at most 16000 characters; names: ResourceName, no dots, in botocore's imagebuilder model)
  [document] https://docs.aws.amazon.com/imagebuilder/latest/userguide/toe-use-documents.html
             (name, schemaVersion 1.0, phases of steps; the build phase runs before the AMI is made)
  [actions]  https://docs.aws.amazon.com/imagebuilder/latest/userguide/toe-action-modules.html
             (ExecuteBash `inputs.commands`; S3Download `inputs` of source/destination/expectedBucketOwner,
             destination folders must exist, the role needs s3:GetObject on the object)
  [infra]    https://docs.aws.amazon.com/imagebuilder/latest/APIReference/API_CreateInfrastructureConfiguration.html
             (no setting gives the build instance a public address: its subnet must)
  [delete]   https://docs.aws.amazon.com/imagebuilder/latest/APIReference/API_DeleteImage.html
             (deleting an Image Builder image leaves its AMI: a replaced image's AMI stays for the old nodes)
Pulumi: https://www.pulumi.com/docs/iac/concepts/options/ignorechanges/ (an ignored input keeps its value
from the state, replacements included: hence a recipe resource per image).
"""

from __future__ import annotations

import ipaddress
import json

import mock_aws
import pytest
import yaml
from aws_program import INSTANCE, NAME, SERVERS, TEMPLATE, run_aws
from mock_aws import AWS_ACCOUNT, AWS_AMI, AWS_ROUTE_TABLE

from components.config.settings import SettingsError
from components.nodes.node_image import BOOTSTRAP_SCRIPT, recipe
from components.platforms.aws import baked_image
from scripts.stack_files import stack_settings

from conftest import unwrap

BAKED = {"nodeImage": "baked"}
IMAGE = "aws:imagebuilder/image:Image"
RECIPE = "aws:imagebuilder/imageRecipe:ImageRecipe"
COMPONENT = "aws:imagebuilder/component:Component"
INFRA = "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
BUCKET = "aws:s3/bucket:Bucket"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
HANDOVER = "pulumi-python:dynamic/hashistack:ServerHandover"


@pytest.fixture(scope="module")
def stock():
    return run_aws()


@pytest.fixture(scope="module")
def baked():
    return run_aws(BAKED)


def _settings(overrides=None):
    return stack_settings("aws", {**BAKED, **(overrides or {})})


def _baked_ami(monitor) -> str:
    (image,) = monitor.of_type(IMAGE)
    return unwrap(image.outputs["outputResources"])[0]["amis"][0]["image"]


def _document(monitor) -> dict:
    (component,) = monitor.of_type(COMPONENT)
    return yaml.safe_load(unwrap(component.inputs["data"]))


def _steps(monitor) -> dict[str, dict]:
    (phase,) = _document(monitor)["phases"]
    assert phase["name"] == "build"
    return {step["name"]: step for step in phase["steps"]}


# -- (a) stock: the fallback, unchanged ------------------------------------------------------------------


def test_a_stock_stack_builds_no_image_and_boots_the_stock_ami(stock):
    assert _settings().node_image.value == "baked" and stack_settings("aws").node_image.value == "stock"
    built = [
        r.urn for r in stock.registrations if r.type.startswith(("aws:imagebuilder", "aws:s3", "hashistack:aws:Baked"))
    ]
    assert built == []
    assert not [c for c in stock.mocks.calls if c.token == "aws:ec2/getRouteTable:getRouteTable"]
    for instance in stock.of_type(INSTANCE):
        assert instance.inputs["ami"] == AWS_AMI, instance.urn
        assert instance.ignore_changes == ["ami"], instance.urn
    (template,) = stock.of_type(TEMPLATE)
    assert template.inputs["imageId"] == AWS_AMI
    assert template.ignore_changes == ["imageId"]


# -- (b) baked: the recipe, what the build instance receives, what the nodes boot -------------------------


def test_the_recipe_is_named_from_the_image_s_hash_over_the_stock_ami(baked):
    """Names in Image Builder may not hold dots [create]: the recipe's is the image's name with `-` for
    them and the stack after it; the AMI's Name tag is the image's name itself."""
    wanted = recipe(_settings())
    (image_recipe,) = baked.of_type(RECIPE)
    inputs = unwrap(image_recipe.inputs)
    assert inputs["name"] == f"{wanted.name.replace('.', '-')}-aws"
    assert inputs["name"] == baked_image.builder_name(_settings(), wanted)
    assert image_recipe.name == f"{NAME}-{inputs['name']}", "a new image is a new recipe resource"
    assert inputs["amiTags"]["Name"] == wanted.name
    assert inputs["amiTags"]["HashistackImageInputs"] == wanted.digest
    assert inputs["version"] == "1.0.0"
    assert inputs["parentImage"] == AWS_AMI, "baked over the stock AMI of the lookup"
    assert image_recipe.ignore_changes == ["parentImage"], "a newer stock AMI alone rebuilds nothing"
    (mapping,) = inputs["blockDeviceMappings"]
    assert mapping["deviceName"] == "/dev/sda1"  # the stock image's root device (mock getAmi)
    assert mapping["ebs"]["volumeType"] == "gp3" and mapping["ebs"]["encrypted"] == "true"
    assert 20 <= mapping["ebs"]["volumeSize"] <= 30, "at least 20 GiB, and no more than the nodes' root volume"
    (component,) = baked.of_type(COMPONENT)
    assert [c["componentArn"] for c in inputs["components"]] == [component.outputs["arn"]]
    assert (component.inputs["name"], component.inputs["version"], component.inputs["platform"]) == (
        inputs["name"],
        "1.0.0",
        "Linux",
    )


def test_the_build_instance_receives_exactly_the_env_and_the_script(baked):
    """The script does not fit in the component's `data` [create], so the document fetches it and the env
    from S3 [actions] and runs the script as root; the objects hold exactly their texts."""
    wanted = recipe(_settings())
    assert len(BOOTSTRAP_SCRIPT.read_bytes()) > baked_image.COMPONENT_DATA_LIMIT, "it would fit: inline it"
    (component,) = baked.of_type(COMPONENT)
    assert len(unwrap(component.inputs["data"])) < baked_image.COMPONENT_DATA_LIMIT
    document = _document(baked)
    assert document["schemaVersion"] == 1.0 and document["name"] == component.inputs["name"]
    steps = _steps(baked)
    assert list(steps) == ["PrepareDirectories", "DownloadBootstrap", "Bake"]
    assert all(step["action"] == "ExecuteBash" for name, step in steps.items() if name != "DownloadBootstrap")

    (bucket,) = baked.of_type(BUCKET)
    objects = {unwrap(o.inputs["key"]): o for o in baked.of_type(OBJECT)}
    assert {o.inputs["bucket"] for o in objects.values()} == {bucket.id}
    downloads = {d["destination"]: d for d in steps["DownloadBootstrap"]["inputs"]}
    assert steps["DownloadBootstrap"]["action"] == "S3Download"
    assert set(downloads) == {"/etc/hashistack/bootstrap.env", "/usr/local/sbin/hashistack-bootstrap"}
    delivered = {}
    for destination, download in downloads.items():
        assert download["expectedBucketOwner"] == AWS_ACCOUNT
        prefix = f"s3://{bucket.outputs['bucket']}/"
        assert download["source"].startswith(prefix), download
        key = download["source"].removeprefix(prefix)
        assert key.startswith(f"{wanted.name}/"), "each image fetches its own objects"
        delivered[destination] = objects[key].inputs["content"]
        assert objects[key].inputs["serverSideEncryption"] == "AES256"
    assert delivered["/etc/hashistack/bootstrap.env"] == wanted.bootstrap_env()
    assert delivered["/usr/local/sbin/hashistack-bootstrap"].encode() == BOOTSTRAP_SCRIPT.read_bytes()

    prepare = steps["PrepareDirectories"]["inputs"]["commands"]
    assert "install -d -m 0700 -o root -g root /etc/hashistack" in prepare, "S3Download needs the folder"
    bake = steps["Bake"]["inputs"]["commands"]
    assert bake[0] == "set -euo pipefail"
    assert "chmod 0600 /etc/hashistack/bootstrap.env" in bake
    assert "chmod 0700 /usr/local/sbin/hashistack-bootstrap" in bake
    run = bake[-1]
    assert run.endswith(" /usr/local/sbin/hashistack-bootstrap"), "the script runs last, its status the step's"
    assert bake.index("chmod 0600 /etc/hashistack/bootstrap.env") < len(bake) - 1


def test_the_bucket_is_private_and_encrypted(baked):
    (bucket,) = baked.of_type(BUCKET)
    (block,) = baked.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block.inputs["bucket"] == bucket.id
    for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block.inputs[flag] is True, flag
    (encryption,) = baked.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    (rule,) = unwrap(encryption.inputs["rules"])
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    for registration in baked.of_type(OBJECT):
        assert block.urn in registration.dependencies and encryption.urn in registration.dependencies


def test_the_nodes_boot_and_follow_the_baked_ami(baked):
    ami = _baked_ami(baked)
    assert ami != AWS_AMI
    instances = baked.of_type(INSTANCE)
    assert sorted(i.name for i in instances) == [f"{NAME}-{s}" for s in SERVERS]
    for instance in instances:
        assert instance.inputs["ami"] == ami, instance.urn
        assert "ami" not in instance.ignore_changes, f"{instance.urn}: a new baked AMI must roll it"
    (template,) = baked.of_type(TEMPLATE)
    assert template.inputs["imageId"] == ami
    assert "imageId" not in template.ignore_changes
    # The image is built from the recipe, on the build infrastructure.
    (image,) = baked.of_type(IMAGE)
    (image_recipe,) = baked.of_type(RECIPE)
    (infra,) = baked.of_type(INFRA)
    assert image.inputs["imageRecipeArn"] == image_recipe.outputs["arn"]
    assert image.inputs["infrastructureConfigurationArn"] == infra.outputs["arn"]
    # What the build reads but names nowhere waits before it: the files and the role's grants.
    baked_urn = baked.one("hashistack:aws:BakedImage", NAME).urn
    waited = {
        r.urn
        for r in baked.registrations
        if r.type in (OBJECT, ATTACHMENT, "aws:iam/rolePolicy:RolePolicy") and r.parent == baked_urn
    }
    assert len(waited) == 5 and waited <= image.dependencies


def test_a_new_baked_ami_takes_each_server_down_through_its_handover(monkeypatch, baked):
    """chain_servers hands a server over before its machine changes when its machine_spec changes
    (components/rollout/server_chain.py): the baked AMI must be in it, the user-data unchanged."""
    monkeypatch.setattr(mock_aws, "baked_ami", lambda name: "ami-0fffffffffffffff0")
    other = run_aws(BAKED)
    assert _baked_ami(other) == "ami-0fffffffffffffff0"
    for server in SERVERS:
        before = baked.one(HANDOVER, f"{NAME}-{server}-handover").inputs["machine_spec"]
        after = other.one(HANDOVER, f"{NAME}-{server}-handover").inputs["machine_spec"]
        assert before != after, server
        assert (
            baked.one(INSTANCE, f"{NAME}-{server}").inputs["userDataBase64"]
            == other.one(INSTANCE, f"{NAME}-{server}").inputs["userDataBase64"]
        )


def test_a_newer_stock_ami_takes_no_server_down(monkeypatch, stock):
    """On a stock stack the AMI is not in the servers' machine_spec (what deployed stacks recorded:
    [user-data, instance type]), so a newer stock image hands over no server."""
    monkeypatch.setattr(mock_aws, "AWS_AMI", "ami-0eeeeeeeeeeeeeee0")
    newer = run_aws()
    assert {i.inputs["ami"] for i in newer.of_type(INSTANCE)} == {"ami-0eeeeeeeeeeeeeee0"}
    for server in SERVERS:
        name = f"{NAME}-{server}-handover"
        assert newer.one(HANDOVER, name).inputs["machine_spec"] == stock.one(HANDOVER, name).inputs["machine_spec"]


def test_the_build_runs_in_a_public_subnet_of_its_own_out_to_the_internet(baked):
    """No NAT in the VPC and no public-address setting in Image Builder [infra]: the build subnet gives one,
    routes through the stack's public route table, and its security group only lets traffic out."""
    (infra,) = baked.of_type(INFRA)
    inputs = unwrap(infra.inputs)
    subnet = baked.one("aws:ec2/subnet:Subnet", f"{NAME}-image-build")
    association = baked.one("aws:ec2/routeTableAssociation:RouteTableAssociation", f"{NAME}-image-build")
    assert subnet.inputs["mapPublicIpOnLaunch"] is True
    assert association.inputs["routeTableId"] == AWS_ROUTE_TABLE
    assert association.inputs["subnetId"] == subnet.id
    assert inputs["subnetId"] == subnet.id
    cidr = ipaddress.ip_network(subnet.inputs["cidrBlock"])
    settings = _settings()
    assert cidr.subnet_of(settings.network_cidr)
    assert not any(cidr.overlaps(s) for s in settings.aws.subnet_cidrs)
    (route_call,) = [c for c in baked.mocks.calls if c.token == "aws:ec2/getRouteTable:getRouteTable"]
    assert (
        route_call.args["subnetId"]
        == baked.one("aws:ec2/routeTableAssociation:RouteTableAssociation", f"{NAME}-subnet-0").inputs["subnetId"]
    )
    group = baked.one("aws:ec2/securityGroup:SecurityGroup", f"{NAME}-image-build")
    assert inputs["securityGroupIds"] == [group.id]
    rules = [
        r for r in baked.registrations if r.type.startswith("aws:vpc/") and r.inputs.get("securityGroupId") == group.id
    ]
    assert [r.type for r in rules] == ["aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"]
    assert inputs["terminateInstanceOnFailure"] is True
    assert inputs["instanceMetadataOptions"]["httpTokens"] == "required"
    assert inputs["instanceTypes"] == [settings.aws.client_instance_type]


# -- (c) a version bump is a new image --------------------------------------------------------------------


def test_a_version_bump_names_a_new_recipe(baked):
    bumped = run_aws({**BAKED, "nomadVersion": "2.0.99"})
    (before,) = baked.of_type(RECIPE)
    (after,) = bumped.of_type(RECIPE)
    assert before.inputs["name"] != after.inputs["name"]
    assert after.inputs["name"] == baked_image.builder_name(
        _settings({"nomadVersion": "2.0.99"}), recipe(_settings({"nomadVersion": "2.0.99"}))
    )
    assert before.urn != after.urn, "a new recipe resource, over the stock AMI of the day"
    (component_before,) = baked.of_type(COMPONENT)
    (component_after,) = bumped.of_type(COMPONENT)
    assert component_before.inputs["name"] != component_after.inputs["name"], "components are immutable too"
    assert "NOMAD_VERSION=2.0.99" in next(
        o.inputs["content"] for o in bumped.of_type(OBJECT) if o.inputs["key"].endswith("/bootstrap.env")
    )


# -- (d) the build role -------------------------------------------------------------------------------------


def test_the_build_role_has_exactly_the_two_managed_policies_and_reads_only_its_files(baked):
    """[setup] names the policies; [managed]: the first reads only ec2imagebuilder-* buckets, so the role
    gets s3:GetObject on this image's objects, nothing more [actions]."""
    role = baked.one(ROLE, f"{NAME}-image-build")
    assert "managedPolicyArns" not in role.inputs
    assert json.loads(unwrap(role.inputs["assumeRolePolicy"]))["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }
    attached = {a.inputs["policyArn"] for a in baked.of_type(ATTACHMENT) if a.inputs["role"] == role.outputs["name"]}
    assert attached == {
        "arn:aws:iam::aws:policy/EC2InstanceProfileForImageBuilder",
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
    }
    assert len(baked.of_type(ATTACHMENT)) == 2, "no other role gets a managed policy"
    (inline,) = [p for p in baked.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id]
    (bucket,) = baked.of_type(BUCKET)
    (statement,) = json.loads(unwrap(inline.inputs["policy"]))["Statement"]
    assert statement["Action"] == ["s3:GetObject"]
    assert statement["Resource"] == f"{bucket.outputs['arn']}/{recipe(_settings()).name}/*"
    profile = baked.one("aws:iam/instanceProfile:InstanceProfile", f"{NAME}-image-build")
    assert profile.inputs["role"] == role.outputs["name"]
    (infra,) = baked.of_type(INFRA)
    assert infra.inputs["instanceProfileName"] == profile.outputs["name"]


# -- what cannot be baked stops before any node resource ---------------------------------------------------


def test_debian_12_cannot_be_baked_by_image_builder():
    """Debian is not among Image Builder's operating systems [os], and its AMIs ship no SSM Agent [setup]."""
    with pytest.raises(Exception, match=r"nodeImage: 'baked' — EC2 Image Builder does not support debian-12"):
        run_aws({**BAKED, "nodeOs": "debian-12"})
    problems = baked_image.baked_image_problems(_settings({"nodeOs": "debian-12"}))
    assert [p.key for p in problems] == ["nodeImage"]
    with pytest.raises(SettingsError):
        baked_image.check_baked_image(_settings({"nodeOs": "debian-12"}))


def test_a_vpc_full_of_subnets_leaves_no_room_for_the_build_subnet():
    settings = _settings({"networkCidr": "10.42.0.0/20", "subnetCidrs": ["10.42.0.0/21", "10.42.8.0/21"]})
    assert baked_image.build_subnet_cidr(settings) is None
    assert [p.key for p in baked_image.baked_image_problems(settings)] == ["subnetCidrs"]
    assert baked_image.build_subnet_cidr(_settings()) == ipaddress.ip_network("10.42.255.240/28")
