"""`make mutation-report`: the last mutmut run per module, with the score that counts.

A mutant that only changes a message (what is raised, logged or reported as a poll's status) is not
counted: the tests assert behaviour and a message's meaning, not every word. Neither is one that only
changes the case of an HTTP header's name, which servers read case-insensitively. Everything
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


# Calls whose arguments from this index on are words for a person: poller.log(text),
# poller.until(what, attempt), _expect(answer, what).
MESSAGE_ARGUMENTS = {"log": (0, 1), "until": (0, 1), "_expect": (1, 2)}


def _message_nodes(tree: ast.AST) -> list[ast.AST]:
    """The expressions that are only words for a person: what is raised, a poll's status text (the
    second item of a returned (done, status) pair), what a poller logs or waits for."""
    found: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            found.append(node.exc)
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 2:
            found.append(node.value.elts[1])
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            start, end = MESSAGE_ARGUMENTS.get(name, (0, 0))
            found.extend(node.args[start:end])
    return found


def _header_names(tree: ast.AST) -> list[ast.Constant]:
    """Header names in `headers={...}` arguments: HTTP header names are case-insensitive (RFC 9110)."""
    return [
        key
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        for keyword in call.keywords
        if keyword.arg == "headers" and isinstance(keyword.value, ast.Dict)
        for key in keyword.value.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    ]


class _Blank(ast.NodeTransformer):
    """Replaces each message expression, whatever it is (an f-string, a string, None), by one placeholder."""

    def __init__(self, messages: list[ast.AST]):
        self.messages = {id(m) for m in messages}

    def visit(self, node: ast.AST) -> ast.AST:
        if id(node) in self.messages:
            return ast.Constant("<message>")
        return super().visit(node)


def _without_messages(node: ast.AST) -> str:
    """The function with its messages blanked and its header names in one case: equal for two
    functions that differ only in wording (or in the case of a header name, which no server sees)."""
    tree = ast.parse(ast.unparse(node))
    for key in _header_names(tree):
        key.value = key.value.lower()
    tree = _Blank(_message_nodes(tree)).visit(tree)
    for child in ast.walk(tree):
        if isinstance(child, ast.FunctionDef):
            child.name = ""
    return ast.dump(tree)


def message_only(module: str) -> set[str]:
    """Keys of the module's mutants that change nothing but the text of strings."""
    source = ROOT / "mutants" / Path(*module.split(".")).with_suffix(".py")
    functions = {n.name: n for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.FunctionDef)}
    originals = {
        name[: -len("__mutmut_orig")]: _without_messages(n)
        for name, n in functions.items()
        if name.endswith("__mutmut_orig")
    }
    found = set()
    for name, node in functions.items():
        base, _, number = name.rpartition("__mutmut_")
        if number.isdigit() and base in originals and _without_messages(node) == originals[base]:
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
        unchecked = [k for k, s in statuses.items() if s == "not checked"]
        if unchecked:
            print(f"{module}: {len(unchecked)} mutants not checked: run `make mutation` to the end first")
            failed = True
        counted = {k: s for k, s in statuses.items() if k not in wording and s != "not checked"}
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
