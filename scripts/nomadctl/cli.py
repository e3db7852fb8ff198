"""nomadctl: see a Nomad job's allocations, read its logs, run a command in it.

Connects with the Nomad CLI's variables (NOMAD_ADDR, NOMAD_TOKEN, NOMAD_CACERT, NOMAD_CLIENT_CERT,
NOMAD_CLIENT_KEY, NOMAD_NAMESPACE, NOMAD_TLS_SERVER_NAME) when NOMAD_ADDR is set, else with the
outputs of --stack (default dev): its Nomad URL, CA, nomadDeveloperToken and appsNamespace.
JOB is a job id or a short name: `web` finds p-web, q-web or t-web when only one of them exists.

Exit codes: 0 done, 1 an error (the message says what to fix), 2 wrong usage; `exec` exits with
the remote command's code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO, TextIO

from scripts.nomadctl.api import NomadApi
from scripts.nomadctl.errors import Failure
from scripts.nomadctl.logs import logs
from scripts.nomadctl.ps import ps
from scripts.nomadctl.remote_exec import run_exec
from scripts.nomadctl.settings import connection

USAGE = 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="nomadctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument("--stack", default="dev", help="the stack whose outputs to connect with (default dev)")
    top.add_argument("--namespace", help="the Nomad namespace (default NOMAD_NAMESPACE, else the stack's apps)")
    commands = top.add_subparsers(dest="command", required=True, metavar="{ps,logs,exec}")

    listing = commands.add_parser("ps", help="the job's allocations: task, node, uptime, CPU, memory, status")
    listing.add_argument("job", metavar="JOB")

    reading = commands.add_parser("logs", help="a task's log from the job's newest running allocation")
    reading.add_argument("job", metavar="JOB")
    reading.add_argument("task", metavar="TASK", nargs="?", help="needed when the group has several tasks")
    reading.add_argument("-f", "--follow", action="store_true", help="keep streaming new output")
    reading.add_argument("--stderr", action="store_true", help="the task's stderr instead of its stdout")
    reading.add_argument("--alloc", metavar="ID", help="this allocation (an id or a prefix) instead of the newest")

    running = commands.add_parser("exec", help="run a command in an allocation's task (default /bin/sh)")
    running.add_argument("alloc", metavar="ALLOC", help="an allocation id or a prefix of one")
    running.add_argument("cmd", metavar="CMD", nargs=argparse.REMAINDER, help="the command (default /bin/sh)")
    # Options go before ALLOC: everything after it is the command's (`exec --task web 1a2b ls -l`).
    running.add_argument("--task", help="needed when the allocation has several tasks")
    return top


def _command(words: list[str]) -> list[str]:
    """CMD as typed after ALLOC; a `--` before it (`exec ID -- ls -l`) only marks where it starts."""
    words = words[1:] if words[:1] == ["--"] else words
    return words or ["/bin/sh"]


def main(
    argv: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    read_outputs: Callable[[str], dict[str, Any]] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin_fd: int | None = None,
    binary_out: BinaryIO | None = None,
    binary_err: BinaryIO | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """The tests pass the environment, the stack's outputs, the streams and the clock."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage error
        return USAGE if exit_.code else 0
    try:
        api = NomadApi(connection(os.environ if env is None else env, args.stack, args.namespace, read_outputs))
        if args.command == "ps":
            print(ps(api, args.job, now, notes=stderr), file=stdout)
            return 0
        if args.command == "logs":
            logs(api, binary_out or sys.stdout.buffer, args.job, args.task, args.follow, args.stderr, args.alloc)
            return 0
        return run_exec(
            api,
            args.alloc,
            _command(args.cmd),
            args.task,
            sys.stdin.fileno() if stdin_fd is None else stdin_fd,
            binary_out or sys.stdout.buffer,
            binary_err or sys.stderr.buffer,
        )
    except Failure as failure:
        print(f"nomadctl: {failure}", file=stderr)
        return 1
    except KeyboardInterrupt:  # ^C during `logs -f`: the user is done
        return 130
