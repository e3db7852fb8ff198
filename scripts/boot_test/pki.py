"""A throwaway certificate authority for one boot test (openssl): the nodes' certificates, with the
names the program's own ClusterSecrets gives them, and the package server's."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Issued:
    cert_pem: str
    key_pem: str
    cert_path: Path
    key_path: Path


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


class ThrowawayCa:
    """A CA in `directory` (`<name>.pem`, `<name>.key`): made there unless `source` names a directory
    holding one of the same name to copy. Also the unit tests' PKI (tests/fake_https.py make_pki)."""

    def __init__(self, directory: Path, source: Path | None = None, days: int = 2, name: str = "ca"):
        self.directory = directory
        self.name = name
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        cert, key = f"{name}.pem", f"{name}.key"
        if source:
            for file in (cert, key):
                (directory / file).write_bytes((source / file).read_bytes())
            (directory / key).chmod(0o600)
        else:
            _openssl(directory, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
            _openssl(directory, "req", "-x509", "-new", "-key", key, "-subj", f"/CN=hashistack test {name}",
                     "-days", str(days), "-out", cert)  # fmt: skip
        self.cert_pem = (directory / cert).read_text()

    def issue(
        self,
        name: str,
        dns_names: list[str],
        ip_addresses: list[str],
        usages: tuple[str, ...] = ("serverAuth", "clientAuth"),
    ) -> Issued:
        """A certificate for `name` with the key usages the cluster's certificates have (components/pki/cluster_secrets.py:
        digital signature, key encipherment) and `usages` (server and client authentication, as a node's)."""
        names = [f"DNS:{n}" for n in dns_names] + [f"IP:{ip}" for ip in ip_addresses]
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(
            (f"subjectAltName={','.join(names)}\n" if names else "")
            + f"keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={','.join(usages)}\n"
        )
        _openssl(self.directory, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")
        _openssl(self.directory, "req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr")
        _openssl(self.directory, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{self.name}.pem", "-CAkey",
                 f"{self.name}.key", "-CAcreateserial", "-days", "2", "-extfile", extensions.name,
                 "-out", f"{name}.pem")  # fmt: skip
        cert, key = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        return Issued(cert.read_text(), key.read_text(), cert, key)
