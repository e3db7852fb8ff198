"""The Nomad HTTP calls nomadctl makes, through python-nomad, with failures turned into what to fix.

python-nomad verifies TLS with a CA file, sends a client certificate, the token (X-Nomad-Token) and
the namespace, and raises one exception class per status; this module adds the server-name override
(NOMAD_TLS_SERVER_NAME, which requests has no option for), streaming logs, and the diagnosis of a
refusal. Nomad 2.0 answers an unknown token and a token without the capability alike, 403 "Permission
denied" (nomad/auth/auth.go Authenticate), and a refused log stream even as 500 "Permission denied"
(command/agent/fs_endpoint.go fsStreamImpl); asking /v1/acl/token/self tells the cases apart.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import nomad
import requests
from nomad.api import exceptions as nomad_errors
from requests.adapters import HTTPAdapter
from urllib3.util.ssl_match_hostname import CertificateError as HostnameMismatch

from scripts.nomadctl.errors import Failure, NotFound
from scripts.nomadctl.settings import Connection

# The bodies Nomad writes for an ACL refusal (nomad/structs/errors.go errPermissionDenied, errTokenNotFound).
PERMISSION_DENIED = "Permission denied"
TOKEN_NOT_FOUND = "ACL token not found"

T = TypeVar("T")


@dataclass(frozen=True)
class Need:
    """What a call needs the token to allow: said when Nomad refuses it."""

    action: str
    capabilities: str


READ_JOBS = Need("read jobs", "list-jobs and read-job")
READ_LOGS = Need("read logs", "read-logs")
EXEC = Need("exec into allocations", "alloc-exec")


class _ServerNameAdapter(HTTPAdapter):
    """Verifies the servers' certificate against `server_name` (and sends it as SNI) whatever the host."""

    def __init__(self, server_name: str):
        self._server_name = server_name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(server_hostname=self._server_name, assert_hostname=self._server_name)
        super().init_poolmanager(*args, **kwargs)


def innermost(error: BaseException) -> BaseException:
    """The cause under requests' and urllib3's wrappers (MaxRetryError.reason, the exception's args)."""
    seen = {id(error)}
    while True:
        reason = getattr(error, "reason", None)
        wrapped = error.args[0] if error.args and isinstance(error.args[0], BaseException) else None
        cause = next(
            (c for c in (reason, error.__cause__, wrapped) if isinstance(c, BaseException) and id(c) not in seen), None
        )
        if cause is None:
            return error
        seen.add(id(cause))
        error = cause


class NomadApi:
    def __init__(self, connection: Connection, timeout: float = 10.0, session: requests.Session | None = None):
        self.connection = connection
        self.timeout = timeout
        session = session or requests.Session()
        if connection.server_name:
            session.mount("https://", _ServerNameAdapter(connection.server_name))
        both = connection.client_cert and connection.client_key
        self._nomad = nomad.Nomad(
            address=connection.address,
            token=connection.token,
            namespace=connection.namespace,
            verify=connection.ca_file or True,
            cert=(connection.client_cert, connection.client_key) if both else (),
            timeout=timeout,
            session=session,
        )

    # -- the calls ------------------------------------------------------------------------------------
    def job(self, job_id: str) -> dict[str, Any]:
        return self._call(READ_JOBS, self._nomad.job.get_job, job_id)

    def jobs(self) -> list[dict[str, Any]]:
        return self._call(READ_JOBS, self._nomad.jobs.get_jobs)

    def job_allocations(self, job_id: str) -> list[dict[str, Any]]:
        return self._call(READ_JOBS, self._nomad.job.get_allocations, job_id)

    def allocation(self, alloc_id: str) -> dict[str, Any]:
        return self._call(READ_JOBS, self._nomad.allocation.get_allocation, alloc_id)

    def allocations_with_prefix(self, prefix: str) -> list[dict[str, Any]]:
        return self._call(READ_JOBS, self._nomad.allocations.get_allocations, prefix=prefix)

    def allocation_stats(self, alloc_id: str) -> dict[str, Any]:
        return self._call(READ_JOBS, self._nomad.client.allocation.read_allocation_stats, alloc_id)

    def log_chunks(self, alloc_id: str, task: str, log_type: str, follow: bool) -> Iterator[bytes]:
        """The task's log as Nomad sends it (plain text), each chunk as it arrives; with `follow`, until
        the user stops it (Nomad keeps the stream open, so no read timeout then)."""
        params = {"task": task, "type": log_type, "follow": _flag(follow), "plain": "true", "origin": "start"}
        read_timeout = None if follow else self.timeout
        response = self._call(
            READ_LOGS,
            self._nomad.client.stream_logs.request,
            alloc_id,
            params=params,
            method="get",
            stream=True,
            timeout=(self.timeout, read_timeout),
        )
        with response:
            try:
                yield from (chunk for chunk in response.iter_content(chunk_size=None) if chunk)
            except requests.RequestException as error:
                raise self.transport_failure(error) from None

    # -- failures -------------------------------------------------------------------------------------
    def _call(self, need: Need, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return call(*args, **kwargs)
        except nomad_errors.BaseNomadException as error:
            raise self._failure(need, error.nomad_resp) from None
        except nomad_errors.TimeoutNomadException as error:  # python-nomad's wrapper for a stream's errors
            raise self.transport_failure(error.args[0] if error.args else error) from None

    def _failure(self, need: Need, answer: requests.Response | BaseException) -> Failure:
        if not isinstance(answer, requests.Response):
            return self.transport_failure(answer)
        text = answer.text.strip()
        if text.endswith((PERMISSION_DENIED, TOKEN_NOT_FOUND)):
            return self.refused(need)
        kind = NotFound if answer.status_code == 404 else Failure
        return kind(f"Nomad at {self.connection.address} answered {answer.status_code}: {text}")

    def refused(self, need: Need) -> Failure:
        """Why Nomad said "Permission denied": no token, a token it does not know, or one without `need`."""
        where = self.connection.namespace
        if not self.connection.token:
            return Failure(
                "no Nomad token: set NOMAD_TOKEN, or leave NOMAD_ADDR unset to use the stack's nomadDeveloperToken"
            )
        try:
            token = self._nomad.acl.get_self_token()
        except nomad_errors.URLNotAuthorizedNomadException:
            return Failure(
                f"Nomad at {self.connection.address} does not know the token ({TOKEN_NOT_FOUND}): it was revoked "
                "or the cluster rebuilt; set NOMAD_TOKEN to a current token, or run `make up` to refresh the "
                "stack's nomadDeveloperToken"
            )
        except nomad_errors.BaseNomadException:
            token = {}
        name = f"the token {token['Name']!r}" if token.get("Name") else "the token"
        return Failure(
            f"{name} may not {need.action} in namespace {where}; use --namespace or a token with "
            f"{need.capabilities} in {where}"
        )

    def transport_failure(self, error: BaseException) -> Failure:
        """No HTTP answer: the address is wrong or down, or the servers' certificate did not verify."""
        address = self.connection.address
        cause = innermost(error)
        # urllib3 checks an assert_hostname (NOMAD_TLS_SERVER_NAME) itself, with its own exception.
        if isinstance(cause, (ssl.SSLCertVerificationError, HostnameMismatch)):
            name = f" for the name {self.connection.server_name}" if self.connection.server_name else ""
            why = getattr(cause, "verify_message", None) or str(cause)
            return Failure(
                f"TLS verification of {address}{name} failed ({why}): is "
                f"{self.connection.ca_origin} the cluster's CA (NOMAD_CACERT), and the address or "
                "NOMAD_TLS_SERVER_NAME a name in the servers' certificate?"
            )
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        return Failure(
            f"cannot reach Nomad at {address} ({reason}): is the cluster up and {self.connection.address_origin} right?"
        )


def _flag(value: bool) -> str:
    return "true" if value else "false"
