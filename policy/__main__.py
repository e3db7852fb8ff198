"""The hashistack policy pack (`pulumi preview --policy-pack policy`): every policy in
resource_policies.POLICIES, each mandatory. The engine runs this file with the pack's virtualenv."""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

# The pack's own folder is on the path (the engine runs it as a directory); the repository root too, so
# a policy may use the program's pure modules (their dependencies then belong in requirements.txt here).
sys.path.append(str(Path(__file__).resolve().parent.parent))

from resource_policies import POLICIES

PolicyPack(name="hashistack", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
