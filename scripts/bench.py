"""`make bench`: wall time of the program under mocks per stack shape, next to the time of merely
importing the SDKs it uses, so that the program's own cost is visible. Not a test: it prints figures.

Each measurement runs in a fresh interpreter (cold imports, as `pulumi up` starts), best of 3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPORT = Path(__file__).resolve().parent.parent / "boot-test-report.json"

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
import tempfile
from pathlib import Path
from conftest import run_program, test_host
host = test_host(Path(tempfile.mkdtemp()))  # kept: its patches last while it lives
host.__enter__()
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


PATH_CASES = [("dev", 3), ("aws", 3), ("dev", 5), ("aws", 5)]


def critical_paths() -> list[tuple[str, int, float, int, float]]:
    """(case, boots and estimated minutes of the first `up`, the same of an `up` replacing every
    server) from the program's own dependency graph under the mocks (scripts/critical_path.py)."""
    import tempfile
    from pathlib import Path

    sys.path[:0] = [".", "tests"]
    from scripts.critical_path import COSTS, boots_on_longest_path
    from scripts.stack_files import stack_settings

    from conftest import run_program, test_host

    rows = []
    with test_host(Path(tempfile.mkdtemp())):
        for stack, servers in PATH_CASES:
            cost = COSTS[stack_settings(stack).platform.value]
            boots = []
            for later in (False, True):
                monitor = run_program(stack, {"serverCount": servers}, preview=True, later=later)
                boots.append(boots_on_longest_path(monitor.registrations)[0])
            rows.append(
                (f"{stack}, {servers} servers", boots[0], cost.minutes(boots[0]), boots[1], cost.minutes(boots[1]))
            )
    return rows


def baked_image_lines(report_path: Path = REPORT) -> list[str]:
    """The stock and baked boot times of the last boot test (boot-test-report.json), their ratio, and
    the dev stack's first `up` estimated with it: the cost model's boot scaled by the ratio."""
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        report = {}
    found = report.get("stock_vs_baked")
    if not found:
        return [f"Baked image: no comparison in {report_path.name}; `make boot-test` boots client-0 "
                "from both images and writes it"]  # fmt: skip
    from scripts.boot_test.__main__ import floor_words
    from scripts.critical_path import COSTS

    cost = COSTS["libvirt"]
    stock, baked = cost.minutes(1), cost.minutes(1, found["ratio"])
    modified = datetime.fromtimestamp(report_path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"Baked image ({report_path.name}, {modified}, {report.get('accelerator', '?').upper()}): {found['node']} "
        f"booted in {found['stock_seconds']} s from the stock image, {found['baked_seconds']} s from the baked one: "
        f"ratio {found['ratio']:.2f} (goal <= {found['goal']:.2f}: {'met' if found['met'] else 'NOT met'}); "
        f"the boot script alone {found.get('stock_bootstrap_seconds')} s and {found.get('baked_bootstrap_seconds')} s"
        f"{floor_words(found)}.",
        f"dev first `up` on a KVM host, estimated: {stock:.1f} min stock, {baked:.1f} min baked (the cost model's "
        f"{cost.boot} min boot scaled by the ratio, plus create {cost.create}, gate {cost.gate} and tail {cost.tail} "
        "min: scripts/critical_path.py).",
    ]


def main() -> int:
    for line in baked_image_lines():
        print(line)
    print()
    print(f"{'case':<18} {'first up: boots':>16} {'est.':>7} {'replace all servers: boots':>27} {'est.':>7}")
    for case, first, first_min, later, later_min in critical_paths():
        print(f"{case:<18} {first:>16} {first_min:>5.0f}min {later:>27} {later_min:>5.0f}min")
    print(
        "Machine boots on the longest dependency path of the program's graph under the mocks: the stack's "
        "first `up` (servers together) and a later `up` replacing every server (one at a time). Minutes are "
        "an estimate from the cost model in scripts/critical_path.py, not a measurement.\n"
    )
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
