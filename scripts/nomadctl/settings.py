"""Where nomadctl connects, and as whom: the Nomad CLI's own variables when set, else a stack's outputs.

NOMAD_ADDR set means "that cluster": the other NOMAD_* variables go with it and no stack is read.
Without it the address, CA, token and namespace come from the stack's outputs (`urls`, `caCertPem`,
`nomadDeveloperToken`, `appsNamespace`), any NOMAD_* variable that is set still overriding its part.
The Nomad servers do not ask HTTPS clients for a certificate (cloudinit/nomad.hcl.j2: tls
verify_https_client = false), so the stack's operator certificate is not needed; NOMAD_CLIENT_CERT
and NOMAD_CLIENT_KEY are honoured for clusters that do ask.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from scripts.nomadctl.errors import Failure

NO_DEVELOPER_TOKEN = "the stack has no nomadDeveloperToken output: run `make up` with this version, or set NOMAD_TOKEN"


@dataclass(frozen=True)
class Connection:
    address: str
    """https://host:4646"""
    token: str | None
    namespace: str
    ca_file: str | None
    """A CA bundle file to verify the servers with; None trusts the system's CAs (as the Nomad CLI)."""
    ca_origin: str
    """Where the CA came from, for a TLS error to name: `NOMAD_CACERT=/path` or the stack output."""
    address_origin: str
    client_cert: str | None = None
    client_key: str | None = None
    server_name: str | None = None
    """NOMAD_TLS_SERVER_NAME: the name to verify the servers' certificate against, if not the host's."""


def private_file(text: str, suffix: str = ".pem") -> str:
    """A file only this user can read (mkstemp creates it 0600), removed when the process exits."""
    handle, path = tempfile.mkstemp(prefix="nomadctl-", suffix=suffix)
    with os.fdopen(handle, "w") as file:
        file.write(text)
    atexit.register(_remove, path)
    return path


def _remove(path: str) -> None:
    with suppress(FileNotFoundError):
        os.remove(path)


def connection(
    env: Mapping[str, str],
    stack: str,
    namespace: str | None = None,
    read_outputs: Callable[[str], dict[str, Any]] | None = None,
) -> Connection:
    """The connection for `--stack stack` and `--namespace namespace` under the environment `env`."""
    given = {key: value for key, value in env.items() if key.startswith("NOMAD_") and value}
    common = {
        "client_cert": given.get("NOMAD_CLIENT_CERT"),
        "client_key": given.get("NOMAD_CLIENT_KEY"),
        "server_name": given.get("NOMAD_TLS_SERVER_NAME"),
    }
    ca_file = given.get("NOMAD_CACERT")
    if "NOMAD_ADDR" in given:
        return Connection(
            address=given["NOMAD_ADDR"].rstrip("/"),
            token=given.get("NOMAD_TOKEN"),
            # The Nomad CLI's default when NOMAD_NAMESPACE is not set.
            namespace=namespace or given.get("NOMAD_NAMESPACE") or "default",
            ca_file=ca_file,
            ca_origin=f"NOMAD_CACERT={ca_file}" if ca_file else "the system's CAs (NOMAD_CACERT is not set)",
            address_origin="NOMAD_ADDR",
            **common,
        )
    if read_outputs is None:
        from scripts.stack_files import stack_outputs as read_outputs
    outputs = read_outputs(stack)
    address = (outputs.get("urls") or {}).get("nomad")
    if not address:
        raise Failure(f"the stack {stack} has no urls.nomad output: is it deployed (`make up STACK={stack}`)?")
    token = given.get("NOMAD_TOKEN") or outputs.get("nomadDeveloperToken")
    if not token:
        raise Failure(NO_DEVELOPER_TOKEN)
    if not ca_file:
        if not outputs.get("caCertPem"):
            raise Failure(f"the stack {stack} has no caCertPem output: is it deployed (`make up STACK={stack}`)?")
        ca_origin = f"the stack {stack}'s caCertPem output"
        ca_file = private_file(outputs["caCertPem"])
    else:
        ca_origin = f"NOMAD_CACERT={ca_file}"
    return Connection(
        address=address.rstrip("/"),
        token=token,
        namespace=namespace or given.get("NOMAD_NAMESPACE") or outputs.get("appsNamespace") or "default",
        ca_file=ca_file,
        ca_origin=ca_origin,
        address_origin=f"the stack {stack}'s urls.nomad output",
        **common,
    )
