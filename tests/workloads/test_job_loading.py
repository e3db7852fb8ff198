"""Loading job files (components/workloads/job_model.py): variables resolve as Nomad's HCL2 parser would,
a file that cannot load is an error naming the file, and the Connect upstreams the intentions need are
read from the services."""

from __future__ import annotations

import pytest
from test_job_rules import DOCUMENTED_VARIABLE, PEER_UPSTREAM, UPSTREAM, job_hcl, mesh_service, write
from test_jobs import ALLOWED

from components.workloads.job_model import JobLoadError, load_job
from components.workloads.job_rules import JobValidationError, check_job, validate_jobs


def test_a_required_variable_without_value_names_file_and_variable(tmp_path):
    path = write(
        tmp_path,
        job_hcl(variables='variable "image" {\n  type = string\n  description = "x"\n}\n', config="image = var.image"),
    )
    with pytest.raises(JobLoadError) as caught:
        load_job(path)
    assert str(caught.value) == f'{path}: variable "image" has no default and no value was given'
    assert load_job(path, {"image": "nginx:1.27.0"}).tasks[0].image == "nginx:1.27.0"


@pytest.mark.parametrize(
    ("variables", "given", "error"),
    [
        (DOCUMENTED_VARIABLE, {"size": "two"}, "variable \"size\": 'two' is not a number"),
        ("", None, 'reference to undeclared variable "var.image"'),
    ],
)
def test_bad_variables_are_load_errors_naming_the_file(tmp_path, variables, given, error):
    path = write(tmp_path, job_hcl(variables=variables, config="image = var.image"))
    with pytest.raises(JobLoadError) as caught:
        load_job(path, given)
    assert str(caught.value).startswith(f"{path}: ") and error in str(caught.value)


def test_values_for_undeclared_variables_are_ignored_unless_no_job_declares_them(tmp_path):
    path = write(tmp_path, job_hcl(variables=DOCUMENTED_VARIABLE))
    job = load_job(path, {"size": 3, "ingress_domain": "example.internal"})
    assert job.variables == {"size": 3}
    (found,) = validate_jobs([(path, {"size": 3})], ALLOWED)
    assert found.variables == {"size": 3}
    with pytest.raises(JobValidationError) as caught:
        validate_jobs([(path, {"size": 3, "sise": 4})], ALLOWED)
    assert caught.value.errors == (f'value given for variable "sise", which no job declares ({path})',)


def test_interpolation_and_escapes_resolve_as_nomad_does(tmp_path):
    variables = 'variable "tag" {\n  type = string\n  description = "t"\n  default = "1.27.0"\n}\nvariable "n" {\n  type = number\n  description = "n"\n  default = 2\n}\n'
    config = 'image = "nginx:${var.tag}"\n        args = ["--copies=${var.n}", "--literal=$${var.tag}", "--port=${NOMAD_PORT_http}"]'
    job = load_job(write(tmp_path, job_hcl(variables=variables, config=config)))
    assert job.tasks[0].image == "nginx:1.27.0"
    assert job.tasks[0].config["args"] == ["--copies=2", "--literal=${var.tag}", "--port=${NOMAD_PORT_http}"]
    assert job.hcl2_vars == {"n": "2", "tag": "1.27.0"}


def test_upstreams_without_a_name_are_skipped_not_a_traceback(tmp_path):
    """Job.upstreams gives the intentions' pairs; an unnamed upstream is the rule mesh-upstreams-named's."""
    both = mesh_service(f"{UPSTREAM}\n            {PEER_UPSTREAM}")
    job = load_job(write(tmp_path, job_hcl(network_mode="bridge", service=both)))
    assert job.upstreams == (("web", "count-api"),)
    assert [v.rule for v in check_job(job, ALLOWED)] == ["mesh-upstreams-named"]
    computed = mesh_service('upstreams {\n              destination_name = "${NOMAD_META_api}"\n            }')
    job = load_job(write(tmp_path, job_hcl(network_mode="bridge", service=computed)))
    assert job.upstreams == ()
    assert [v.rule for v in check_job(job, ALLOWED)] == ["mesh-upstreams-named"]
