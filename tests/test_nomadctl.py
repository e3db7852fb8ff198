"""nomadctl (scripts/nomadctl/) against a local HTTPS server that answers as Nomad 2.0 does
(tests/fake_nomad.py, from the contract in tests/upstream_nomadctl.py): the ps table, logs, exec over
the websocket, the job and allocation lookups, and every error message."""

from __future__ import annotations

import base64
import io
import json
import os
import pty
import socket
import stat
import subprocess
import termios
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import upstream
import upstream_nomadctl as contract
from fake_nomad import DEVELOPER_TOKEN, OTHER_TOKEN, FakeNomad, allocation
from test_upstream_contract import CITATION

from scripts.nomadctl import cli, ps, remote_exec, settings
from scripts.nomadctl.api import NomadApi
from scripts.nomadctl.errors import Failure
from scripts.nomadctl.settings import NO_DEVELOPER_TOKEN

from conftest import ROOT, shellcheck_path

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
ALLOC_A = "a1b2c3d4-0000-4000-8000-00000000000a"
ALLOC_B = "a1b2ffff-0000-4000-8000-00000000000b"
ALLOC_C = "c0ffee00-0000-4000-8000-00000000000c"
WEB_JOB = {"ID": "p-web", "TaskGroups": [{"Name": "web", "Tasks": [{"Name": "server"}]}]}


@pytest.fixture
def fake(pki):
    server = FakeNomad(pki)
    server.jobs["p-web"] = {"Namespace": "apps", "Status": "running", "groups": {"web": ["server"]}}
    server.jobs["p-api"] = {"Namespace": "apps", "Status": "running", "groups": {"api": ["app", "sidecar"]}}
    server.jobs["t-api"] = {"Namespace": "apps", "Status": "pending", "groups": {"api": ["app", "sidecar"]}}
    server.jobs["q-cron"] = {"Namespace": "apps", "Status": "dead", "groups": {"cron": ["run"]}}
    server.allocs += [
        allocation(
            ALLOC_A,
            "p-web",
            "web",
            {"server": {"started": "2026-12-04T07:59:00.123456789Z", "memory_mb": 512, "memory_max_mb": 1229}},
            created=2,
            job=WEB_JOB,
        ),
        allocation(ALLOC_B, "p-web", "web", {"server": {"state": "dead"}}, status="complete", created=1, job=WEB_JOB),
        allocation(
            ALLOC_C,
            "p-api",
            "api",
            {
                "app": {"started": "2026-12-07T11:48:00Z", "memory_mb": 300},
                "sidecar": {"started": "2026-12-07T11:59:15Z", "memory_mb": 64},
            },
            node="client-1",
            created=5,
        ),
    ]
    server.stats[ALLOC_A] = {"server": {"rss": 994050048, "ticks": 250.7, "measured": ["RSS"]}}
    # cgroup v2: RSS is not measured, Usage is what the CLI shows.
    server.stats[ALLOC_C] = {"app": {"usage": 300 * 1024 * 1024, "ticks": 12.2}, "sidecar": {"rss": 0, "usage": 5000}}
    yield server
    server.close()


def env_for(fake: FakeNomad, pki, **extra: str) -> dict[str, str]:
    return {
        "NOMAD_ADDR": fake.url,
        "NOMAD_CACERT": str(pki / "ca.pem"),
        "NOMAD_TOKEN": DEVELOPER_TOKEN,
        "NOMAD_NAMESPACE": "apps",
        **extra,
    }


def run(argv: list[str], env: dict[str, str], outputs: dict[str, Any] | None = None, **streams: Any):
    out, err, binary = io.StringIO(), io.StringIO(), io.BytesIO()
    code = cli.main(
        argv,
        env=env,
        read_outputs=(lambda _stack: outputs) if outputs is not None else _no_stack,
        stdout=out,
        stderr=err,
        binary_out=streams.pop("binary_out", binary),
        now=lambda: NOW,
        **streams,
    )
    return code, out.getvalue(), err.getvalue(), binary.getvalue()


def _no_stack(stack: str) -> dict[str, Any]:
    raise AssertionError(f"read the stack {stack}'s outputs although NOMAD_ADDR is set")


# -- the contract ----------------------------------------------------------------------------------
def test_every_nomadctl_answer_names_its_upstream_source():
    mine = {name for name, value in vars(contract).items() if hasattr(value, "__wrapped__")}
    assert len(mine) >= 12
    for name in mine:
        assert CITATION.search(upstream.SOURCES[name]), name
        assert upstream.NOMAD_TAG in upstream.SOURCES[name], name
    for topic, source in contract.EXEC_SOURCES.items():
        assert CITATION.search(f"hashicorp/nomad {source}"), topic


# -- ps --------------------------------------------------------------------------------------------
def test_ps_shows_each_task_of_each_allocation_newest_first(fake, pki):
    code, out, err, _ = run(["ps", "web"], env_for(fake, pki))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "job p-web (service, namespace apps): running"
    assert [line.split() for line in lines[1:]] == [
        ["ALLOC", "TASK", "NODE", "UPTIME", "CPU", "MEMORY", "STATUS"],
        ["a1b2c3d4", "server", "client-0", "3d", "4h", "250", "MHz", "948", "MiB(1.2", "GiB)", "running"],
        ["a1b2ffff", "server", "client-0", "-", "-", "-", "complete"],
    ]
    # Columns line up: every cell starts where its header does.
    assert lines[2].index("client-0") == lines[1].index("NODE") and lines[3].index("complete") == lines[1].index(
        "STATUS"
    )
    assert not [r for r in fake.requests if r.path == f"/v1/client/allocation/{ALLOC_B}/stats"], (
        "stats of a stopped alloc"
    )


def test_ps_memory_is_usage_where_rss_is_not_measured_and_the_limit_memory_mb(fake, pki):
    code, out, _, _ = run(["ps", "p-api"], env_for(fake, pki))
    rows = {line.split()[1]: line for line in out.splitlines()[2:]}
    assert code == 0
    assert rows["app"].split()[3:] == ["12m", "12", "MHz", "300", "MiB(300", "MiB)", "running"]
    assert rows["sidecar"].split()[3:] == ["45s", "0", "MHz", "4.9", "KiB(64", "MiB)", "running"]


def test_ps_without_stats_from_the_node_shows_dashes_and_says_why(fake, pki):
    del fake.stats[ALLOC_A]
    code, out, err, _ = run(["ps", "web"], env_for(fake, pki))
    assert code == 0
    assert out.splitlines()[2].split()[3:] == ["3d", "4h", "-", "-", "running"]
    assert err == f"nomadctl: no stats for allocation a1b2c3d4: Nomad at {fake.url} answered 404: No path to node\n"


def test_ps_of_a_job_without_allocations(fake, pki):
    code, out, _, _ = run(["ps", "cron"], env_for(fake, pki))
    assert (code, out) == (0, "job q-cron (service, namespace apps): dead\nno allocations\n")


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (9, "9 B"),
        (10, "10 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (5000, "4.9 KiB"),
        (10 * 1024, "10 KiB"),
        (994050048, "948 MiB"),
        (1229 * 1024**2, "1.2 GiB"),
        (1024**7 * 2, "2048 EiB"),
    ],
)
def test_bytes_read_as_go_humanize_ibytes(count, text):
    assert ps.ibytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "0s"),
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h 0m"),
        (3660, "1h 1m"),
        (86399, "23h 59m"),
        (86400, "1d 0h"),
        (273600, "3d 4h"),
    ],
)
def test_uptime_reads_in_its_two_largest_units(seconds, text):
    assert ps.duration(seconds) == text


def test_memory_used_is_rss_unless_rss_was_not_measured():
    assert ps.memory_used({"MemoryStats": {"RSS": 7, "Usage": 9, "Measured": ["RSS"]}}) == 7
    assert ps.memory_used({"MemoryStats": {"RSS": 0, "Usage": 9, "Measured": ["RSS"]}}) == 0
    assert ps.memory_used({"MemoryStats": {"RSS": 0, "Usage": 9, "Measured": ["Usage"]}}) == 9
    assert ps.memory_used({"MemoryStats": {"Usage": 9}}) == 9
    assert ps.memory_used({}) is None


def test_a_running_task_that_never_started_has_no_uptime():
    alloc = allocation(ALLOC_A, "p-web", "web", {"server": {}})
    assert ps.task_row(alloc, "server", None, NOW)[3:] == ["-", "-", "-", "running"]
    assert ps.started_at({"StartedAt": ""}) is None


# -- job lookup ------------------------------------------------------------------------------------
def test_a_short_name_finds_its_one_tiered_job_and_a_job_id_is_used_as_it_is(fake, pki):
    assert run(["ps", "cron"], env_for(fake, pki))[1].startswith("job q-cron ")
    fake.jobs["web"] = {"Namespace": "apps", "Status": "running", "groups": {"web": ["server"]}}
    assert run(["ps", "web"], env_for(fake, pki))[1].startswith("job web ")
    assert [r.path for r in fake.requests if r.path.startswith("/v1/job/") and "web" in r.path][-2:] == [
        "/v1/job/web",
        "/v1/job/web/allocations",
    ]


def test_a_short_name_of_several_tiers_is_ambiguous(fake, pki):
    code, _, err, _ = run(["ps", "api"], env_for(fake, pki))
    assert (code, err) == (
        1,
        "nomadctl: api names several jobs in namespace apps: p-api, t-api; give the full job id\n",
    )


def test_a_job_nowhere_lists_the_namespace_s_jobs(fake, pki):
    code, _, err, _ = run(["ps", "nope"], env_for(fake, pki))
    assert code == 1
    assert err == "nomadctl: job nope not found in namespace apps (jobs there: p-api, p-web, q-cron, t-api)\n"
    asked = [r.path for r in fake.requests if r.path.startswith("/v1/job")]
    assert asked == ["/v1/job/nope", "/v1/job/p-nope", "/v1/job/q-nope", "/v1/job/t-nope", "/v1/jobs"]


def test_a_job_nowhere_in_an_empty_namespace(fake, pki):
    fake.jobs.clear()
    assert run(["ps", "web"], env_for(fake, pki))[2] == (
        "nomadctl: job web not found in namespace apps (jobs there: none)\n"
    )


def test_a_job_nowhere_without_the_right_to_list_says_only_that(fake, pki, monkeypatch):
    monkeypatch.setattr(NomadApi, "jobs", lambda _self: (_ for _ in ()).throw(Failure("no list-jobs")))
    assert run(["ps", "nope"], env_for(fake, pki))[2] == "nomadctl: job nope not found in namespace apps\n"


# -- errors that say what to fix -------------------------------------------------------------------
def test_no_token(fake, pki):
    env = env_for(fake, pki)
    del env["NOMAD_TOKEN"]
    code, _, err, _ = run(["ps", "web"], env)
    assert code == 1
    assert err == (
        "nomadctl: no Nomad token: set NOMAD_TOKEN, or leave NOMAD_ADDR unset to use the stack's nomadDeveloperToken\n"
    )
    assert "X-Nomad-Token" not in fake.requests[0].headers


def test_a_token_nomad_does_not_know(fake, pki):
    code, _, err, _ = run(["ps", "web"], env_for(fake, pki, NOMAD_TOKEN="revoked-secret"))
    assert code == 1
    assert err == (
        f"nomadctl: Nomad at {fake.url} does not know the token (ACL token not found): it was revoked or the "
        "cluster rebuilt; set NOMAD_TOKEN to a current token, or run `make up` to refresh the stack's "
        "nomadDeveloperToken\n"
    )
    assert fake.requests[-1].path == "/v1/acl/token/self"
    assert fake.requests[-1].headers["X-Nomad-Token"] == "revoked-secret"


def test_a_token_without_the_namespace(fake, pki):
    code, _, err, _ = run(["ps", "web"], env_for(fake, pki, NOMAD_TOKEN=OTHER_TOKEN))
    assert code == 1
    assert err == (
        "nomadctl: the token 'ops' may not read jobs in namespace apps; use --namespace or a token with "
        "list-jobs and read-job in apps\n"
    )


def test_the_namespace_comes_from_the_option_first(fake, pki):
    fake.jobs["p-tool"] = {"Namespace": "default", "Status": "running", "groups": {"tool": ["t"]}}
    code, out, _, _ = run(["--namespace", "default", "ps", "tool"], env_for(fake, pki, NOMAD_TOKEN=OTHER_TOKEN))
    assert (code, out.splitlines()[0]) == (0, "job p-tool (service, namespace default): running")
    assert fake.requests[0].query["namespace"] == "default"


def test_an_unreachable_address(fake, pki):
    fake.close()
    code, _, err, _ = run(["ps", "web"], env_for(fake, pki))
    assert code == 1
    assert (
        err
        == f"nomadctl: cannot reach Nomad at {fake.url} (Connection refused): is the cluster up and NOMAD_ADDR right?\n"
    )


def test_a_server_certificate_the_ca_did_not_sign(pki):
    impostor = FakeNomad(pki, cert="impostor")
    try:
        code, _, err, _ = run(["ps", "web"], env_for(impostor, pki))
    finally:
        impostor.close()
    assert code == 1
    assert err == (
        f"nomadctl: TLS verification of {impostor.url} failed (unable to get local issuer certificate): is "
        f"NOMAD_CACERT={pki / 'ca.pem'} the cluster's CA (NOMAD_CACERT), and the address or NOMAD_TLS_SERVER_NAME "
        "a name in the servers' certificate?\n"
    )


def test_tls_server_name_is_the_name_verified(fake, pki):
    env = env_for(fake, pki, NOMAD_ADDR=fake.url.replace("127.0.0.1", "localhost"))
    assert "(Hostname mismatch" in run(["ps", "web"], env)[2]
    assert run(["ps", "web"], {**env, "NOMAD_TLS_SERVER_NAME": "server.dc1.consul"})[0] == 0
    code, _, err, _ = run(["ps", "web"], {**env, "NOMAD_TLS_SERVER_NAME": "other.dc1.consul"})
    assert code == 1 and f"TLS verification of {env['NOMAD_ADDR']} for the name other.dc1.consul failed" in err


def test_any_other_answer_is_shown_with_its_status(fake, pki, monkeypatch):
    monkeypatch.setattr(
        FakeNomad, "answer", lambda _self, _seen: upstream.Answer(500, "rpc error: boom", "x", "text/plain")
    )
    assert run(["ps", "web"], env_for(fake, pki))[2] == f"nomadctl: Nomad at {fake.url} answered 500: rpc error: boom\n"


@pytest.mark.parametrize("argv", [[], ["ps"], ["logs"], ["exec"], ["frobnicate", "x"], ["ps", "web", "extra"]])
def test_usage_errors_exit_2(argv, fake, pki, capsys):
    assert run(argv, env_for(fake, pki))[0] == 2
    assert "usage: nomadctl" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert cli.main(["--help"], env={}) == 0
    assert "NOMAD_TLS_SERVER_NAME" in capsys.readouterr().out


# -- connection settings ---------------------------------------------------------------------------
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
OUTPUTS = {
    "urls": {"nomad": "https://10.42.0.10:4646/", "consul": "https://10.42.0.10:8501"},
    "caCertPem": CA_PEM,
    "nomadDeveloperToken": DEVELOPER_TOKEN,
    "nomadBootstrapToken": "management-secret",
    "appsNamespace": "apps",
}


def test_the_stack_s_outputs_without_nomad_addr():
    asked = []
    conn = settings.connection({}, "aws", read_outputs=lambda stack: asked.append(stack) or OUTPUTS)
    assert asked == ["aws"]
    assert (conn.address, conn.token, conn.namespace) == ("https://10.42.0.10:4646", DEVELOPER_TOKEN, "apps")
    assert conn.address_origin == "the stack aws's urls.nomad output"
    assert conn.ca_origin == "the stack aws's caCertPem output"
    # The CA is in a file only this user can read, removed at exit.
    assert stat.S_IMODE(os.stat(conn.ca_file).st_mode) == 0o600
    assert Path(conn.ca_file).read_text() == CA_PEM
    settings._remove(conn.ca_file)
    assert not os.path.exists(conn.ca_file)
    settings._remove(conn.ca_file)  # twice is fine (atexit after a test removed it)


def test_nomad_variables_override_the_stack_s_parts():
    env = {"NOMAD_TOKEN": "mine", "NOMAD_CACERT": "/etc/ca.pem", "NOMAD_NAMESPACE": "team", "NOMAD_REGION": ""}
    conn = settings.connection(env, "dev", read_outputs=lambda _s: OUTPUTS)
    assert (conn.token, conn.ca_file, conn.ca_origin, conn.namespace) == (
        "mine",
        "/etc/ca.pem",
        "NOMAD_CACERT=/etc/ca.pem",
        "team",
    )
    assert settings.connection(env, "dev", "other", read_outputs=lambda _s: OUTPUTS).namespace == "other"
    bare = settings.connection({}, "dev", read_outputs=lambda _s: {**OUTPUTS, "appsNamespace": None})
    assert bare.namespace == "default"


def test_nomad_addr_means_that_cluster_and_no_stack():
    env = {"NOMAD_ADDR": "https://nomad.example:4646/", "NOMAD_CLIENT_CERT": "c.pem", "NOMAD_CLIENT_KEY": "k.pem"}
    conn = settings.connection({**env, "NOMAD_TLS_SERVER_NAME": "server.global.nomad"}, "dev", read_outputs=_no_stack)
    assert (conn.address, conn.token, conn.namespace, conn.ca_file) == (
        "https://nomad.example:4646",
        None,
        "default",
        None,
    )
    assert (conn.client_cert, conn.client_key, conn.server_name) == ("c.pem", "k.pem", "server.global.nomad")
    assert conn.ca_origin == "the system's CAs (NOMAD_CACERT is not set)"
    assert conn.address_origin == "NOMAD_ADDR"


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("nomadDeveloperToken", NO_DEVELOPER_TOKEN),
        ("urls", "the stack dev has no urls.nomad output: is it deployed (`make up STACK=dev`)?"),
        ("caCertPem", "the stack dev has no caCertPem output: is it deployed (`make up STACK=dev`)?"),
    ],
)
def test_a_stack_without_an_output_says_which(missing, message):
    code, _, err, _ = run(["ps", "web"], {}, outputs={**OUTPUTS, missing: None})
    assert (code, err) == (1, f"nomadctl: {message}\n")


def test_the_missing_developer_token_names_the_fixes():
    assert NO_DEVELOPER_TOKEN == (
        "the stack has no nomadDeveloperToken output: run `make up` with this version, or set NOMAD_TOKEN"
    )
    # The bootstrap (management) token is never a fallback.
    conn = settings.connection(
        {"NOMAD_TOKEN": "t"}, "dev", read_outputs=lambda _s: {**OUTPUTS, "nomadDeveloperToken": None}
    )
    assert conn.token == "t"


def test_the_stack_s_ca_verifies_the_servers(fake, pki):
    outputs = {**OUTPUTS, "urls": {"nomad": fake.url}, "caCertPem": (pki / "ca.pem").read_text()}
    code, out, _, _ = run(["ps", "web"], {}, outputs=outputs)
    assert (code, out.splitlines()[0]) == (0, "job p-web (service, namespace apps): running")
    assert fake.requests[0].headers["X-Nomad-Token"] == DEVELOPER_TOKEN
    assert fake.requests[0].query["namespace"] == "apps"


def test_a_client_certificate_is_sent_when_set(fake, pki):
    env = env_for(fake, pki, NOMAD_CLIENT_CERT=str(pki / "operator.pem"), NOMAD_CLIENT_KEY=str(pki / "operator.key"))
    api = NomadApi(settings.connection(env, "dev"))
    assert api._nomad.jobs.cert == (str(pki / "operator.pem"), str(pki / "operator.key"))
    assert run(["ps", "web"], env)[0] == 0
    half = NomadApi(settings.connection({**env, "NOMAD_CLIENT_KEY": ""}, "dev"))
    assert half._nomad.jobs.cert == ()


# -- logs ------------------------------------------------------------------------------------------
def test_logs_of_the_one_task_of_the_newest_running_allocation(fake, pki):
    fake.logs[(ALLOC_A, "server", "stdout")] = lambda: [b"listening on :8080\n", b"GET / 200\n"]
    code, _, err, binary = run(["logs", "web"], env_for(fake, pki))
    assert (code, err, binary) == (0, "", b"listening on :8080\nGET / 200\n")
    asked = fake.requests[-1]
    assert asked.path == f"/v1/client/fs/logs/{ALLOC_A}"
    assert asked.query == {
        "task": "server",
        "type": "stdout",
        "follow": "false",
        "plain": "true",
        "origin": "start",
        "namespace": "apps",
    }


def test_logs_of_a_named_task_and_its_stderr(fake, pki):
    fake.logs[(ALLOC_C, "sidecar", "stderr")] = lambda: [b"warn\n"]
    assert run(["logs", "api", "sidecar", "--stderr"], env_for(fake, pki, NOMAD_TOKEN=DEVELOPER_TOKEN))[2] == (
        "nomadctl: api names several jobs in namespace apps: p-api, t-api; give the full job id\n"
    )
    code, _, _, binary = run(["logs", "p-api", "sidecar", "--stderr"], env_for(fake, pki))
    assert (code, binary) == (0, b"warn\n")


def test_logs_of_a_group_with_several_tasks_needs_one(fake, pki):
    code, _, err, _ = run(["logs", "p-api"], env_for(fake, pki))
    assert (code, err) == (1, "nomadctl: group api of job p-api has several tasks: app, sidecar; name one of them\n")
    code, _, err, _ = run(["logs", "p-api", "nginx"], env_for(fake, pki))
    assert (code, err) == (1, "nomadctl: no task nginx in group api of job p-api; its tasks: app, sidecar\n")


def test_logs_of_a_job_with_nothing_running(fake, pki):
    fake.allocs = [a for a in fake.allocs if a["ID"] != ALLOC_A]
    code, _, err, _ = run(["logs", "web"], env_for(fake, pki))
    assert (code, err) == (1, "nomadctl: job p-web has no running allocation (complete); name one with --alloc ID\n")
    assert run(["logs", "cron"], env_for(fake, pki))[2] == (
        "nomadctl: job q-cron has no running allocation (no allocations); name one with --alloc ID\n"
    )


def test_logs_of_a_named_allocation(fake, pki):
    fake.logs[(ALLOC_B, "server", "stdout")] = lambda: [b"old run\n"]
    code, _, _, binary = run(["logs", "web", "--alloc", "a1b2f"], env_for(fake, pki))
    assert (code, binary) == (0, b"old run\n")
    code, _, err, _ = run(["logs", "p-api", "--alloc", ALLOC_A[:8]], env_for(fake, pki))
    assert (code, err) == (1, f"nomadctl: allocation {ALLOC_A} belongs to job p-web, not p-api\n")


def test_logs_follow_writes_each_chunk_as_it_comes(fake, pki):
    first_written = threading.Event()

    class Screen(io.BytesIO):
        def flush(self) -> None:
            if self.getvalue():
                first_written.set()

    def chunks():
        yield b"line 1\n"
        # The second chunk comes only once the first is on the screen: a client that buffered the
        # stream would wait here until the timeout and fail.
        assert first_written.wait(5), "the first chunk was not written before the stream went on"
        yield b"line 2\n"

    fake.logs[(ALLOC_A, "server", "stdout")] = chunks
    screen = Screen()
    code, _, err, _ = run(["logs", "web", "-f"], env_for(fake, pki), binary_out=screen)
    assert (code, err, screen.getvalue()) == (0, "", b"line 1\nline 2\n")
    assert fake.requests[-1].query["follow"] == "true"
    assert first_written.is_set()


def test_logs_refused(fake, pki):
    fake.logs[(ALLOC_A, "server", "stdout")] = lambda: [b"secret\n"]
    api = NomadApi(settings.connection(env_for(fake, pki), "dev"))
    fake.tokens[DEVELOPER_TOKEN] = ("developer", {"default"})  # the job reads, the logs do not
    with pytest.raises(Failure) as refused:
        list(api.log_chunks(ALLOC_A, "server", "stdout", follow=False))
    assert str(refused.value) == (
        "the token 'developer' may not read logs in namespace apps; use --namespace or a token with read-logs in apps"
    )


def test_logs_interrupted_by_the_user_exit_130(fake, pki):
    def chunks():
        yield b"one\n"

    class Interrupted(io.BytesIO):
        def write(self, _data: bytes) -> int:
            raise KeyboardInterrupt

    fake.logs[(ALLOC_A, "server", "stdout")] = chunks
    assert run(["logs", "web", "-f"], env_for(fake, pki), binary_out=Interrupted())[0] == 130


def test_a_stream_that_breaks_is_an_unreachable_server(fake, pki):
    api = NomadApi(settings.connection(env_for(fake, pki), "dev"))

    class Broken:
        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def iter_content(self, chunk_size=None):
            import requests

            yield b"x"
            raise requests.exceptions.ChunkedEncodingError("Connection broken: reset")

    api._nomad.client.stream_logs.request = lambda *_a, **_k: Broken()
    with pytest.raises(Failure, match=r"cannot reach Nomad at .* \(Connection broken: reset\)"):
        list(api.log_chunks(ALLOC_A, "server", "stdout", follow=True))


# -- allocation prefixes ---------------------------------------------------------------------------
def test_an_ambiguous_prefix_lists_its_matches(fake, pki):
    code, _, err, _ = run(["exec", "a1b2", "true"], env_for(fake, pki), stdin_fd=_empty_stdin())
    assert code == 1
    assert err == (
        "nomadctl: the prefix a1b2 matches 2 allocations; give more of the id:\n"
        "  a1b2c3d4  p-web  web  running\n"
        "  a1b2ffff  p-web  web  complete\n"
    )
    assert fake.requests[0].query["prefix"] == "a1b2"


def test_an_odd_prefix_is_asked_for_whole_bytes_and_matched_in_full(fake, pki):
    fake.exec_handler = lambda ws, _seen: ws.send_json(contract.exec_exited(0))
    assert run(["exec", "a1b2c", "true"], env_for(fake, pki), stdin_fd=_empty_stdin())[0] == 0
    assert fake.requests[0].query["prefix"] == "a1b2"
    assert fake.requests[1].path == f"/v1/allocation/{ALLOC_A}"


def test_an_unknown_prefix(fake, pki):
    code, _, err, _ = run(["exec", "ffff", "true"], env_for(fake, pki), stdin_fd=_empty_stdin())
    assert (code, err) == (1, "nomadctl: no allocation with the id or prefix ffff in namespace apps\n")


def test_a_prefix_with_hyphens_counts_only_its_hex_digits():
    from scripts.nomadctl.lookup import _queryable

    assert _queryable("a1b2c3d4-0") == "a1b2c3d4-"
    assert _queryable("a1b2c3d4-00") == "a1b2c3d4-00"
    assert _queryable("a") == ""


# -- exec ------------------------------------------------------------------------------------------
def test_exec_sends_stdin_as_base64_and_returns_the_exit_code(fake, pki):
    seen_frames: list[dict[str, Any]] = []

    def session(ws, seen):
        while True:
            frame = ws.recv_json()
            seen_frames.append(frame)
            if frame.get("stdin", {}).get("close"):
                break
        ws.send_json({})  # a heartbeat: nothing to show
        ws.send_json(contract.exec_output("stdout", b"hello from the task\n"))
        ws.send_json(contract.exec_output("stderr", b"a warning\n"))
        ws.send_json({"stdout": {"close": True}})
        ws.send_json(contract.exec_exited(3))

    fake.exec_handler = session
    read_end, write_end = os.pipe()
    os.write(write_end, b"echo hi\n")
    os.close(write_end)
    errors = io.BytesIO()
    code, _, err, out = run(
        ["exec", ALLOC_A[:8], "sh", "-c", "cat"], env_for(fake, pki), stdin_fd=read_end, binary_err=errors
    )
    os.close(read_end)
    assert (code, err) == (3, "")
    assert (out, errors.getvalue()) == (b"hello from the task\n", b"a warning\n")
    assert seen_frames == [{"stdin": {"data": base64.b64encode(b"echo hi\n").decode()}}, {"stdin": {"close": True}}]
    handshake = fake.requests[-1]
    assert handshake.path == f"/v1/client/allocation/{ALLOC_A}/exec"
    assert handshake.headers["X-Nomad-Token"] == DEVELOPER_TOKEN
    assert handshake.query == {"task": "server", "command": '["sh", "-c", "cat"]', "tty": "false", "namespace": "apps"}
    assert json.loads(handshake.query["command"]) == ["sh", "-c", "cat"]


def test_exec_exit_code_0_is_an_empty_result(fake, pki):
    fake.exec_handler = lambda ws, _seen: ws.send_json({"exited": True, "result": {}})
    code, *_ = run(["exec", ALLOC_A, "--", "true"], env_for(fake, pki), stdin_fd=_empty_stdin())
    assert code == 0
    assert json.loads(fake.requests[-1].query["command"]) == ["true"]


def test_exec_defaults_to_a_shell_and_asks_for_the_task_of_several(fake, pki):
    fake.exec_handler = lambda ws, _seen: ws.send_json(contract.exec_exited(0))
    code, _, err, _ = run(["exec", ALLOC_C[:8]], env_for(fake, pki), stdin_fd=_empty_stdin())
    assert (code, err) == (1, "nomadctl: group api of job p-api has several tasks: app, sidecar; name one of them\n")
    code, *_ = run(["exec", "--task", "sidecar", ALLOC_C[:8]], env_for(fake, pki), stdin_fd=_empty_stdin())
    assert code == 0
    assert fake.requests[-1].query["task"] == "sidecar"
    assert json.loads(fake.requests[-1].query["command"]) == ["/bin/sh"]


def test_exec_refused_is_explained(fake, pki):
    fake.tokens[DEVELOPER_TOKEN] = ("developer", {"apps"})
    fake.exec_handler = lambda ws, _seen: ws.close(1011, "Permission denied")
    code, _, err, _ = run(["exec", ALLOC_A[:8], "true"], env_for(fake, pki), stdin_fd=_empty_stdin())
    assert (code, err) == (
        1,
        "nomadctl: the token 'developer' may not exec into allocations in namespace apps; use --namespace or a token "
        "with alloc-exec in apps\n",
    )


def test_exec_with_a_token_nomad_does_not_know(fake, pki):
    api = NomadApi(settings.connection(env_for(fake, pki, NOMAD_TOKEN="revoked"), "dev"))
    ws = remote_exec.connect(api, remote_exec.exec_url(api.connection, ALLOC_A, "server", ["true"], False))
    session = remote_exec.ExecSession(ws, api, _empty_stdin(), io.BytesIO(), io.BytesIO())
    with pytest.raises(Failure, match="does not know the token"):
        session.run()


@pytest.mark.parametrize(
    ("close", "message"),
    [
        ((1011, "task not running"), "Nomad ended the exec session: task not running (websocket close 1011)"),
        ((1008, ""), "Nomad ended the exec session: no reason given (websocket close 1008)"),
        ((1000, ""), "Nomad closed the exec session before the command's exit code arrived"),
    ],
)
def test_exec_closed_before_an_exit_code(fake, pki, close, message):
    fake.exec_handler = lambda ws, _seen: ws.close(*close)
    assert (
        run(["exec", ALLOC_A[:8], "true"], env_for(fake, pki), stdin_fd=_empty_stdin())[2] == f"nomadctl: {message}\n"
    )


def test_exec_connection_lost(fake, pki):
    fake.exec_handler = lambda ws, _seen: ws._sock.shutdown(socket.SHUT_RDWR)
    assert run(["exec", ALLOC_A[:8], "true"], env_for(fake, pki), stdin_fd=_empty_stdin())[2] == (
        "nomadctl: the connection to Nomad closed before the command's exit code arrived\n"
    )


def test_exec_refused_before_the_upgrade(fake, pki, monkeypatch):
    class Refused(Exception):
        pass

    import websocket

    def refuse(*_a, **_k):
        raise websocket.WebSocketBadStatusException("x", 403, resp_body=b"Permission denied")

    monkeypatch.setattr(websocket, "create_connection", refuse)
    api = NomadApi(settings.connection(env_for(fake, pki), "dev"))
    with pytest.raises(Failure, match="the token 'developer' may not exec into allocations"):
        remote_exec.connect(api, "wss://x")

    def other(*_a, **_k):
        raise websocket.WebSocketBadStatusException("x", 400, resp_body=b"tty value is not a boolean")

    monkeypatch.setattr(websocket, "create_connection", other)
    with pytest.raises(Failure, match=r"refused the exec session \(400\): tty value is not a boolean$"):
        remote_exec.connect(api, "wss://x")


def test_exec_to_an_unreachable_server(fake, pki):
    api = NomadApi(settings.connection(env_for(fake, pki), "dev"))
    fake.close()
    with pytest.raises(Failure, match=r"cannot reach Nomad at .* \(Connection refused\)"):
        remote_exec.connect(api, remote_exec.exec_url(api.connection, ALLOC_A, "server", ["true"], False))


def test_exec_trusts_only_the_ca(pki):
    impostor = FakeNomad(pki, cert="impostor")
    try:
        api = NomadApi(settings.connection(env_for(impostor, pki), "dev"))
        with pytest.raises(Failure, match=r"TLS verification of .* failed \(unable to get local issuer certificate\)"):
            remote_exec.connect(api, remote_exec.exec_url(api.connection, ALLOC_A, "server", ["true"], False))
    finally:
        impostor.close()


def test_exec_verifies_the_tls_server_name(fake, pki):
    env = env_for(
        fake, pki, NOMAD_ADDR=fake.url.replace("127.0.0.1", "localhost"), NOMAD_TLS_SERVER_NAME="server.dc1.consul"
    )
    fake.exec_handler = lambda ws, _seen: ws.send_json(contract.exec_exited(0))
    assert run(["exec", ALLOC_A[:8], "true"], env, stdin_fd=_empty_stdin())[0] == 0
    options = remote_exec.tls_options(settings.connection(env, "dev"))
    assert options["server_hostname"] == "server.dc1.consul"
    assert "server_hostname" not in remote_exec.tls_options(settings.connection(env_for(fake, pki), "dev"))


def test_exec_url_scheme_follows_the_address(fake, pki):
    conn = settings.connection(env_for(fake, pki, NOMAD_ADDR="http://127.0.0.1:4646"), "dev")
    assert remote_exec.exec_url(conn, "id", "t", ["ls", "-l"], True) == (
        "ws://127.0.0.1:4646/v1/client/allocation/id/exec?task=t&command=%5B%22ls%22%2C+%22-l%22%5D&tty=true"
        "&namespace=apps"
    )


def test_exec_with_a_terminal_sends_its_size_raw_mode_and_restores_it(fake, pki, monkeypatch):
    """On a pseudo-terminal: tty=true, the size first, then a resize after SIGWINCH, keys in raw mode,
    the terminal's modes back as they were afterwards."""
    controller, terminal = pty.openpty()
    termios.tcsetwinsize(terminal, (24, 80))
    before = termios.tcgetattr(terminal)
    frames: list[dict[str, Any]] = []
    modes_during: list[list[Any]] = []

    def session(ws, seen):
        assert seen.query["tty"] == "true"
        frames.append(ws.recv_json())
        modes_during.append(termios.tcgetattr(terminal))
        termios.tcsetwinsize(terminal, (50, 132))
        os.kill(os.getpid(), remote_exec.signal.SIGWINCH)
        frames.append(ws.recv_json())
        os.write(controller, b"\x03")  # ^C goes to the remote shell as a byte, not a signal here
        frames.append(ws.recv_json())
        ws.send_json(contract.exec_exited(130))

    fake.exec_handler = session
    code, _, err, _ = run(["exec", ALLOC_A[:8]], env_for(fake, pki), stdin_fd=terminal)
    assert (code, err) == (130, "")
    assert frames == [
        {"tty_size": {"height": 24, "width": 80}},
        {"tty_size": {"height": 50, "width": 132}},
        {"stdin": {"data": base64.b64encode(b"\x03").decode()}},
    ]
    assert not modes_during[0][3] & termios.ICANON, "not in raw mode"
    assert termios.tcgetattr(terminal) == before
    assert remote_exec.signal.getsignal(remote_exec.signal.SIGWINCH) in (remote_exec.signal.SIG_DFL, None)
    os.close(controller)
    os.close(terminal)


def test_exec_sends_a_heartbeat(fake, pki):
    frames: list[dict[str, Any]] = []

    def session(ws, _seen):
        frames.append(ws.recv_json())
        ws.send_json(contract.exec_exited(0))

    fake.exec_handler = session
    read_end, _write_end = os.pipe()  # stdin stays open: only the heartbeat speaks
    api = NomadApi(settings.connection(env_for(fake, pki), "dev"))
    code = remote_exec.run_exec(api, ALLOC_A[:8], ["true"], None, read_end, io.BytesIO(), io.BytesIO(), 0.01)
    assert (code, frames) == (0, [{}])


def _empty_stdin() -> int:
    read_end, write_end = os.pipe()
    os.close(write_end)
    return read_end


# -- the wrapper -----------------------------------------------------------------------------------
def test_bin_nomadctl_runs_the_module_from_anywhere(tmp_path):
    wrapper = ROOT / "bin" / "nomadctl"
    assert os.access(wrapper, os.X_OK)
    lint = subprocess.run([shellcheck_path(), "--severity=style", str(wrapper)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    (tmp_path / "nomadctl").symlink_to(wrapper)
    result = subprocess.run([str(tmp_path / "nomadctl"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: nomadctl")
