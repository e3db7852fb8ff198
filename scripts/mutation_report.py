"""`make mutation-report`: the last mutmut run per module, with the score that counts.

A mutant that only changes the text of a string (an error message's wording, a log line) is listed
but not counted: the tests assert behaviour, and a message's meaning, not every word. Everything
else that survives is a missing assertion or an untested branch. Reads `mutmut results --all true`
and the mutated sources mutmut writes under mutants/ (each mutant a function beside the original).
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAUGHT = {"killed", "timeout", "caught by type check"}
TARGET = 0.80


def results() -> dict[str, str]:
    """mutant key (components.module.x_function__mutmut_N) -> status, from mutmut itself."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pairs = (line.strip().rsplit(": ", 1) for line in out.splitlines() if ": " in line)
    return {key: status for key, status in pairs}


def _without_strings(node: ast.AST) -> str:
    """The function's AST with every string's text blanked: equal for two functions that differ in wording only."""
    tree = ast.parse(ast.unparse(node))
    for child in ast.walk(tree):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            child.value = ""
        if isinstance(child, ast.FunctionDef):
            child.name = ""
    return ast.dump(tree)


def message_only(module: str) -> set[str]:
    """Keys of the module's mutants that change nothing but the text of strings."""
    source = ROOT / "mutants" / Path(*module.split(".")).with_suffix(".py")
    functions = {n.name: n for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.FunctionDef)}
    originals = {name[: -len("__mutmut_orig")]: _without_strings(n) for name, n in functions.items() if name.endswith("__mutmut_orig")}
    found = set()
    for name, node in functions.items():
        base, _, number = name.rpartition("__mutmut_")
        if number.isdigit() and base in originals and _without_strings(node) == originals[base]:
            found.add(f"{module}.{name}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=TARGET, help="the score each module must reach")
    args = parser.parse_args(argv)
    by_module: dict[str, dict[str, str]] = defaultdict(dict)
    for key, status in results().items():
        by_module[key.split(".x")[0]][key] = status
    failed = False
    for module, statuses in sorted(by_module.items()):
        wording = message_only(module)
        counted = {k: s for k, s in statuses.items() if k not in wording}
        caught = sum(s in CAUGHT for s in counted.values())
        score = caught / len(counted) if counted else 1.0
        failed |= score < args.target
        tally = Counter(statuses.values())
        print(
            f"{module}: {score:.0%} of {len(counted)} mutants caught "
            f"({len(wording)} that change only a message's wording not counted; {dict(sorted(tally.items()))})"
        )
        for key, status in sorted(counted.items()):
            if status not in CAUGHT:
                print(f"    {status}: {key}   (mutmut show {key})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
