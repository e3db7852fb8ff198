"""The repository's own promises: README in sync with the schema and with CI, scripts that lint clean."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from scripts.config_reference import reference_table, with_reference

from conftest import ROOT, shellcheck_path

README = (ROOT / "README.md").read_text()
SHELL_SCRIPTS = sorted(
    [
        *ROOT.glob("scripts/*.sh"),
        *ROOT.glob("scripts/boot_test/*.sh"),
        *ROOT.glob("cloudinit/*.sh"),
        ROOT / ".ci" / "run",
    ]
)


def test_config_reference_is_in_sync_with_the_schema():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert with_reference(README, reference_table(project)) == README, "run `make docs`"
    for key in project["config"]:
        assert f"| `{key}` |" in README
    table = reference_table({"config": {"k": {"type": "string", "default": "", "description": "d"}}})
    assert table.endswith('| `k` | string | `""` | d |'), "an empty default shows as the empty string"


def test_ci_runs_exactly_the_readme_test_command():
    quickstart = re.search(r"## Quickstart\n.*?```sh\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in quickstart.strip().splitlines()]
    assert len(commands) == 2, commands
    deploy, test = commands
    assert deploy == "make up STACK=dev"
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == test, f".ci/run must end by running {test!r}"


def test_readme_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"`make ([a-z0-9-]+)", README)):
        assert re.search(rf"^{target}:", makefile, re.M), f"README mentions `make {target}`, Makefile lacks it"


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_pass_shellcheck(script):
    result = subprocess.run([shellcheck_path(), "--severity=style", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# Text that reaches resources (user-data, the libvirt stylesheets, ACL policies, jobspecs) keeps the
# module paths it was deployed with: rewriting even a comment there updates the policies and replaces
# every machine of a deployed stack (the layout by stage, #18, left them as they were).
RESOURCE_TEXT = ("cloudinit/", "libvirt/", "policies/", "jobs/", "tests/deployed-state/")
SYNTHETIC_TREES = ("tests/test_layout.py",)


def test_every_module_path_the_repository_cites_exists():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    missing = []
    for name in files:
        path = ROOT / name
        if name.startswith(RESOURCE_TEXT + SYNTHETIC_TREES) or not path.is_file() or path.suffix in (".png", ".gz"):
            continue
        text = path.read_text(errors="replace")
        missing += [
            f"{name}: {cited}"
            for cited in re.findall(r"\bcomponents/[\w/]+\.py\b", text)
            if not (ROOT / cited).is_file()
        ]
    assert not missing, missing
