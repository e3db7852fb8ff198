"""The layout of components/ keeps the data flow: one package per stage, and imports that point one way.

A stage may import itself and the stages before it, never one after it; nothing imports in a circle;
the platforms' shared shape imports neither platform, and the platforms do not import each other
(__main__.py chooses one). The checks read the source with `ast`, lazy imports inside functions
included, so a cycle that only bites at run time is caught too.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT

STAGES = ("config", "pki", "nodes", "dynamic", "rollout", "platforms", "bootstrap", "access", "workloads")
"""In data-flow order (README, Layout). `dynamic` is what the dynamic resources share."""
IMPLEMENTATIONS = {"platforms": ("shape",)}
"""A package whose shared modules must not import its sub-packages, which must not import each other."""
LEGACY = {
    "components.client_node": "components.rollout.client_node",
    "components.server_health": "components.rollout.server_health",
    "components.stack_epoch": "components.rollout.stack_epoch",
}
"""Old module paths that deployed states name (tests/test_deployed_state.py): each re-exports only."""


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that a file imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from a.b import c` imports a.b, and a.b.c when c is a module.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph(root: Path, package: str = "components") -> dict[str, set[str]]:
    files = sorted((root / package).rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    return {module_name(f, root): imports_of(f, root, modules) - {module_name(f, root)} for f in files}


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def layout_problems(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, imported in sorted(graph.items()):
        if module == "components":
            problems += [f"components/__init__.py imports {target}" for target in sorted(imported)]
            continue
        if module in LEGACY:
            if imported - {LEGACY[module]}:
                problems.append(f"{module} (kept for deployed states) imports more than {LEGACY[module]}")
            continue
        stage = stage_of(module)
        if stage is None:
            problems.append(f"{module} belongs to no stage of {STAGES}")
            continue
        for target in sorted(imported):
            if target in LEGACY:
                problems.append(f"{module} imports {target}, a path kept only for deployed states")
            elif target != "components" and stage_of(target) is None:
                problems.append(f"{module} imports {target}, which belongs to no stage")
            elif target != "components" and STAGES.index(stage_of(target)) > STAGES.index(stage):
                problems.append(f"{module} ({stage}) imports {target} ({stage_of(target)}), a later stage")
            problems += implementation_problems(module, target)
    return problems + [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]


def implementation_problems(module: str, target: str) -> list[str]:
    """A shared shape that imports an implementation, or one implementation importing another."""
    for package, shared in IMPLEMENTATIONS.items():
        prefix = f"components.{package}."
        if not (module.startswith(prefix) and target.startswith(prefix)):
            continue
        source, dest = module[len(prefix) :].split("."), target[len(prefix) :].split(".")
        if source[0] in shared and dest[0] not in shared:
            return [f"{module}, the shared shape, imports its implementation {target}"]
        if source[0] not in shared and dest[0] not in shared and source[0] != dest[0]:
            return [f"{module} imports {target}, another implementation of the same shape"]
    return []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (depth-first search)."""
    found, state = [], dict.fromkeys(graph, 0)  # 0 unseen, 1 on the current path, 2 done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif state.get(target) == 0:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if state[module] == 0:
            visit(module)
    return found


def test_the_components_keep_the_layout():
    assert layout_problems(import_graph(ROOT)) == []


def test_every_stage_is_a_package_with_a_docstring():
    for stage in STAGES:
        init = ROOT / "components" / stage / "__init__.py"
        assert init.is_file(), f"components/{stage}/ is no package"
        assert ast.get_docstring(ast.parse(init.read_text())), f"components/{stage}/__init__.py says nothing"


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for name, text in {"components/__init__.py": "", **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    for stage in STAGES:
        (tmp_path / "components" / stage).mkdir(exist_ok=True)
        (tmp_path / "components" / stage / "__init__.py").touch()
    return import_graph(tmp_path)


GOOD = {
    "components/config/settings.py": "import os\n",
    "components/pki/cluster_secrets.py": "from components.config.settings import x\n",
    "components/platforms/shape.py": "from components.pki import cluster_secrets\n",
    "components/platforms/aws/nodes.py": "from components.platforms.shape import NodesArgs\n",
    "components/platforms/libvirt/nodes.py": "import components.platforms.shape\n",
    "components/workloads/deploy.py": "from components import CHECKOUT\n",
}


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (
            {"components/config/settings.py": "def f():\n    from components.pki.cluster_secrets import x\n"},
            "components.config.settings (config) imports components.pki.cluster_secrets (pki), a later stage",
        ),
        (
            {
                "components/platforms/shape.py": "from components.platforms import aws\nimport components.platforms.aws.nodes\n"
            },
            "components.platforms.shape, the shared shape, imports its implementation components.platforms.aws.nodes",
        ),
        (
            {"components/platforms/aws/nodes.py": "from components.platforms.libvirt.nodes import x\n"},
            "another implementation of the same shape",
        ),
        (
            {
                "components/pki/a.py": "from components.pki import b\n",
                "components/pki/b.py": "import components.pki.a\n",
            },
            "import cycle: components.pki.a -> components.pki.b -> components.pki.a",
        ),
        ({"components/platform.py": ""}, "components.platform belongs to no stage"),
        ({"components/__init__.py": "from components.config import settings\n"}, "components/__init__.py imports"),
        (
            {"components/stack_epoch.py": "from components.rollout.stack_epoch import P\nimport components.pki\n"},
            "components.stack_epoch (kept for deployed states) imports more than",
        ),
        (
            {
                "components/server_health.py": "from components.rollout.server_health import P\n",
                "components/access/grants.py": "from components.server_health import P\n",
            },
            "imports components.server_health, a path kept only for deployed states",
        ),
    ],
)
def test_the_check_names_each_kind_of_break(tmp_path, files, problem):
    assert layout_problems(_tree(tmp_path, GOOD)) == []
    found = layout_problems(_tree(tmp_path, files))
    assert any(problem in line for line in found), found
