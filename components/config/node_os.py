"""The operating systems a node may run, and what differs between them for this project.

Ubuntu 24.04 is the default; Debian 12 is supported beside it (the release the boot test can build
here with debootstrap). What the program needs to know per release: its codename (the HashiCorp apt
suite the boot script adds, which takes it from /etc/os-release), the client packages by their names
in that release, and the cloud image to boot on AWS. Differences that matter to an operator are in
the README ("Node operating systems").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class NodeOs(StrEnum):
    UBUNTU_24_04 = "ubuntu-24.04"
    DEBIAN_12 = "debian-12"


@dataclass(frozen=True)
class OsRelease:
    codename: str
    """The release's suite name, as in /etc/os-release VERSION_CODENAME."""
    base_packages: tuple[str, ...]
    """Installed by the bootstrap on every node (the first thing it does, when the image lacks them)."""
    client_packages: tuple[str, ...]
    """Docker, nftables (the task firewall) and a Java runtime for the java driver, by this release's names."""
    ami_owner: str
    """The AWS account that publishes the official images: an image of the same name by anyone else is never used."""
    ami_name: str
    """The official images' name pattern (amd64, the most recent is taken)."""

    def packages_for(self, role: str) -> tuple[str, ...]:
        """What the bootstrap installs from the release's archive for `role` (server, client, or image:
        a baked image holds what either role needs)."""
        return self.base_packages + (self.client_packages if role != "server" else ())


_COMMON = ("ca-certificates", "curl", "gnupg", "jq")

RELEASES: dict[NodeOs, OsRelease] = {
    NodeOs.UBUNTU_24_04: OsRelease(
        codename="noble",
        base_packages=_COMMON,
        client_packages=("docker.io", "nftables", "openjdk-21-jre-headless"),
        # Canonical's account.
        ami_owner="099720109477",
        ami_name="ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
    ),
    NodeOs.DEBIAN_12: OsRelease(
        codename="bookworm",
        # systemd-resolved is a package of its own since Debian 12 (systemd 252) and not in every
        # image; the nodes forward *.consul through it.
        base_packages=(*_COMMON, "systemd-resolved"),
        # bookworm has no openjdk-21 (17 is its default JDK); WireMock 3 needs 11 or later.
        client_packages=("docker.io", "nftables", "openjdk-17-jre-headless"),
        # The Debian cloud team's account (images "debian-12-amd64-<date>-<build>").
        ami_owner="136693071363",
        ami_name="debian-12-amd64-*",
    ),
}
