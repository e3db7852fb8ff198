"""`make bench`: wall time of the program under mocks per stack shape, next to the time of merely
importing the SDKs it uses, so that the program's own cost is visible. Not a test: it prints figures.

Each measurement runs in a fresh interpreter (cold imports, as `pulumi up` starts), best of 3.
"""

from __future__ import annotations

import json
import subprocess
import sys

CASES = [
    ("dev", {}),
    ("aws", {}),
    ("dev", {"clientCount": 50}),
    ("aws", {"clientCount": 500}),
]
SDKS = {
    "dev": ["pulumi", "pulumi_tls", "pulumi_random", "pulumi_libvirt"],
    # pulumi_aws loads its submodules lazily: import the ones the program touches.
    "aws": ["pulumi", "pulumi_tls", "pulumi_random"]
    + [f"pulumi_aws.{m}" for m in ("ec2", "vpc", "lb", "iam", "kms", "ssm", "autoscaling")],
}
RUNS = 3

_IMPORTS = "import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
_PROGRAM = """
import json, sys, time
t = time.perf_counter()
sys.path[:0] = ['.', 'tests']
from conftest import run_program
monitor = run_program({stack!r}, json.loads({overrides!r}), preview=True)
cold = time.perf_counter() - t
t = time.perf_counter()
run_program({stack!r}, json.loads({overrides!r}), preview=True)
print(cold, time.perf_counter() - t, len(monitor.registrations))
"""


def _best(code: str) -> tuple[float, list[str]]:
    times, extra = [], []
    for _ in range(RUNS):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        times.append(float(out[0]))
        extra = out[1:]
    return min(times), extra


def main() -> int:
    print(f"{'case':<28} {'SDK imports':>12} {'cold run':>9} {'warm run':>9} {'resources':>10}")
    for stack, overrides in CASES:
        label = stack + "".join(f" {k}={v}" for k, v in overrides.items())
        imports, _ = _best(_IMPORTS.format(modules=", ".join(SDKS[stack])))
        cold, (warm, resources) = _best(_PROGRAM.format(stack=stack, overrides=json.dumps(overrides)))
        print(f"{label:<28} {imports:>11.2f}s {cold:>8.2f}s {float(warm):>8.2f}s {resources:>10}")
    print(
        "SDK imports: importing the SDK modules alone (pulumi_aws defers most of its classes to first use). "
        "cold run: a fresh interpreter running __main__.py under the test mocks, every import and the "
        "mock harness included. warm run: the same program again in that interpreter, the program's "
        f"own cost. Best of {RUNS}; Python {sys.version.split()[0]}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
