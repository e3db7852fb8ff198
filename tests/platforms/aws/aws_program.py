"""What the tests of the AWS platform share (test_aws_*.py here): the aws stack's program, run as
`pulumi preview` runs it, and the names of what it registers. Not a test module."""

from __future__ import annotations

import functools
from typing import Any

from mock_aws import AWS_ACCOUNT, AWS_REGION

from conftest import RecordingMonitor, run_program

STACK = "aws"
NAME = "cluster"  # as __main__.py names the components
SERVERS = [f"server-{i}" for i in range(3)]
INSTANCE = "aws:ec2/instance:Instance"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
GROUP = "aws:autoscaling/group:Group"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
PARAMETER = "aws:ssm/parameter:Parameter"
WORLD = {"0.0.0.0/0", "::/0"}


def run_aws(overrides: dict[str, Any] | None = None, later: bool = False) -> RecordingMonitor:
    """__main__.py itself, for the aws stack (as `pulumi preview` runs it; `later`: not the first `up`)."""
    return run_program(STACK, overrides, preview=True, later=later)


@functools.cache
def preview() -> RecordingMonitor:
    """One run with the stack's own settings, shared by the read-only tests of every file here."""
    return run_aws()


def aws_resources(monitor) -> list:
    aws_registrations = [r for r in monitor.registrations if r.type.startswith("aws:")]
    assert aws_registrations, "no AWS resource registered"
    return aws_registrations


def short(registration) -> str:
    return registration.name.removeprefix(f"{NAME}-")


def parameter_pattern(scope: str) -> str:
    return f"arn:aws:ssm:{AWS_REGION}:{AWS_ACCOUNT}:parameter/hashistack/{STACK}/{scope}/*"
