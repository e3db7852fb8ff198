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
    "aws": ["pulumi", "pulumi_tls", "pulumi_random", "pulumi_aws"],
}
RUNS = 3

_IMPORTS = "import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
_PROGRAM = """
import json, sys, time
t = time.perf_counter()
sys.path[:0] = ['.', 'tests']
from conftest import run_program
monitor = run_program({stack!r}, json.loads({overrides!r}), preview=True)
print(time.perf_counter() - t, len(monitor.registrations))
"""


def _best(code: str) -> tuple[float, list[str]]:
    times, extra = [], []
    for _ in range(RUNS):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        times.append(float(out[0]))
        extra = out[1:]
    return min(times), extra


def main() -> int:
    print(f"{'case':<28} {'SDK imports':>12} {'whole run':>10} {'the rest':>9} {'resources':>10}")
    for stack, overrides in CASES:
        label = stack + "".join(f" {k}={v}" for k, v in overrides.items())
        imports, _ = _best(_IMPORTS.format(modules=", ".join(SDKS[stack])))
        program, extra = _best(_PROGRAM.format(stack=stack, overrides=json.dumps(overrides)))
        print(f"{label:<28} {imports:>11.2f}s {program:>9.2f}s {program - imports:>8.2f}s {extra[0]:>10}")
    print(
        f"whole run: a fresh interpreter running __main__.py under the test mocks (harness included); "
        f"the rest: whole run minus SDK imports. Best of {RUNS}; Python {sys.version.split()[0]}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
