"""The artifact rule's helpers (components/workloads/rules/artifacts.py): checksums as Nomad and go-getter
read them."""

from __future__ import annotations

from test_job_rules import DIGEST, JAR, SHA512, artifact, java_job, write
from test_jobs import ALLOWED

from components.workloads.job_model import load_job
from components.workloads.job_rules import check_job
from components.workloads.rules.artifacts import checksum_problem


def test_the_first_checksum_parameter_counts_as_in_go(tmp_path):
    """url.Values.Get gives the first value (go-getter checksum.go@v1.8.8 extractChecksum)."""
    first_bad = java_job(task_extra=artifact(f"{JAR}?checksum=md5:{'ab' * 16}&checksum={DIGEST}"))
    assert [v.rule for v in check_job(load_job(write(tmp_path, first_bad)), ALLOWED)] == ["artifacts-checksummed"]
    first_good = java_job(task_extra=artifact(f"{JAR}?checksum={DIGEST}&checksum=md5:{'ab' * 16}"))
    assert check_job(load_job(write(tmp_path, first_good)), ALLOWED) == []


def test_checksums():
    """nomad/structs/structs.go@v2.0.5 TaskArtifact.validateChecksum and go-getter checksum.go@v1.8.8."""
    assert checksum_problem(DIGEST, in_url=False) is None
    assert checksum_problem(SHA512, in_url=True) is None
    assert checksum_problem(f" {DIGEST.upper().replace('SHA256', 'sha256')} ", in_url=False) is None
    assert checksum_problem("ab" * 32, in_url=True) is None
    assert 'is not "<type>:<hex>"' in checksum_problem("ab" * 32, in_url=False)
    assert "use sha256 or sha512" in checksum_problem("sha1:" + "ab" * 20, in_url=False)
    assert "use sha256 or sha512" in checksum_problem("crc32:abcd", in_url=True)
    assert "is not a sha512 digest (128 hex digits)" in checksum_problem("sha512:" + "ab" * 32, in_url=False)
    assert "is not a string" in checksum_problem(5, in_url=False)
