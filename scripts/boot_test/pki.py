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
    """A CA in `directory` (ca.pem, ca.key): made there unless `source` names one to copy."""

    def __init__(self, directory: Path, source: Path | None = None, days: int = 2):
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if source:
            for name in ("ca.pem", "ca.key"):
                (directory / name).write_bytes((source / name).read_bytes())
            (directory / "ca.key").chmod(0o600)
        else:
            _openssl(directory, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
            _openssl(directory, "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=hashistack boot test CA",
                     "-days", str(days), "-out", "ca.pem")  # fmt: skip
        self.cert_pem = (directory / "ca.pem").read_text()

    def issue(self, name: str, dns_names: list[str], ip_addresses: list[str]) -> Issued:
        """A certificate for `name` (server and client authentication, as the cluster's node certificates)."""
        names = [f"DNS:{n}" for n in dns_names] + [f"IP:{ip}" for ip in ip_addresses]
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(
            f"subjectAltName={','.join(names)}\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
        )
        _openssl(self.directory, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")
        _openssl(self.directory, "req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr")
        _openssl(self.directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", extensions.name, "-out", f"{name}.pem")  # fmt: skip
        cert, key = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        return Issued(cert.read_text(), key.read_text(), cert, key)
