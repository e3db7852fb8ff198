"""The baked node image: what a node installs at boot, installed once into an image. Pure functions.

The recipe is the boot script itself (cloudinit/hashistack-bootstrap.sh) run with ROLE=image over the
stack's stock image: the same package sources, keys and checksums as a node's first boot, and what either
role installs (a server and a client boot the same image; the script enables what the role runs).
The script then removes what would make two nodes alike (seal_image): no secret and no identity is
in the image; cloud-init writes them at each node's boot.

The image's name carries the hash of everything that decides its contents: the stock image under it,
the versions, the package list and the script. A version bump names a new image, which the platforms
see as a new base image (libvirt: a new volume, each server's disk moving onto it in its own step of the
server chain; AWS: a new AMI). The URLs of the package sources are not in the hash: they say where the
bytes come from, and the signing key's fingerprint (which is) says whose they must be.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from components.config.node_os import RELEASES, NodeOs
from components.config.settings import PackageSource, Platform, Settings, Versions
from components.nodes import node_config

IMAGE_ROLE = "image"
BOOTSTRAP_SCRIPT = node_config.TEMPLATES / "hashistack-bootstrap.sh"
ENV_TEMPLATE = node_config.BOOTSTRAP_ENV_TEMPLATE
NAME_PREFIX = "hashistack-"


@dataclass(frozen=True)
class ImageRecipe:
    node_os: NodeOs
    base: str
    """The stock image it is baked over: libvirt, the base image's SHA-256; AWS, the official images'
    owner and name pattern."""
    versions: Versions
    package_source: PackageSource

    @property
    def packages(self) -> tuple[str, ...]:
        return RELEASES[self.node_os].packages_for(IMAGE_ROLE)

    @property
    def envoy_image(self) -> str:
        return node_config.envoy_image(self.versions)

    @property
    def envoy_archive(self) -> str:
        """Where the image keeps Envoy (the bake writes it, a client's boot loads it)."""
        return node_config.container_archive(self.envoy_image)

    @cached_property
    def inputs(self) -> dict[str, object]:
        """Everything the image's contents follow from (Envoy by its tag: the image holds what the tag
        named when it was baked)."""
        v = self.versions
        return {
            "node_os": self.node_os.value,
            "base": self.base,
            "versions": {
                "consul": v.consul,
                "nomad": v.nomad,
                "vault": v.vault,
                "consul_cni": v.consul_cni,
                "cni_plugins": v.cni_plugins,
                "envoy": v.envoy,
            },
            "container_images": [self.envoy_image],
            "packages": list(self.packages),
            "hashicorp_key_fingerprint": self.package_source.key_fingerprint,
            "script_sha256": hashlib.sha256(BOOTSTRAP_SCRIPT.read_bytes()).hexdigest(),
            "env_sha256": hashlib.sha256((node_config.TEMPLATES / ENV_TEMPLATE).read_bytes()).hexdigest(),
        }

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.inputs, sort_keys=True).encode()).hexdigest()

    @property
    def name(self) -> str:
        """`hashistack-<os>-<first 12 hex digits of the inputs' hash>`."""
        return f"{NAME_PREFIX}{self.node_os.value}-{self.digest[:12]}"

    def bootstrap_env(self) -> str:
        """/etc/hashistack/bootstrap.env for the bake: the nodes' template, with role `image`."""
        return node_config.render_template(
            ENV_TEMPLATE,
            {
                "role": IMAGE_ROLE,
                "node_address": None,
                "versions": self.versions,
                "package_source": self.package_source,
                "envoy_image": self.envoy_image,
                "envoy_archive": self.envoy_archive,
                "release_packages": self.packages,
                "secrets_source": "none",
                "ssm_region": "",
            },
        )


def recipe(settings: Settings, base: str | None = None) -> ImageRecipe:
    """The stack's image recipe; `base` overrides the stock image's identity (the boot test's own)."""
    if base is None:
        if settings.platform is Platform.LIBVIRT:
            assert settings.libvirt
            base = settings.libvirt.base_image_sha256 or settings.libvirt.base_image
        else:
            release = RELEASES[settings.node_os]
            base = f"{release.ami_owner}/{release.ami_name}"
    return ImageRecipe(settings.node_os, base, settings.versions, settings.package_source)


def image_path(directory: Path, recipe_: ImageRecipe) -> Path:
    return directory / f"{recipe_.name}.qcow2"


def manifest_path(image: Path) -> Path:
    """Beside the image, as JSON: {"inputs": what it was built from, "build_seconds": ...}."""
    return image.with_suffix(".json")


def stale_images(directory: Path, recipe_: ImageRecipe) -> dict[Path, list[str]]:
    """The other baked images of this OS in `directory`, each with what differs from `recipe_`."""
    found: dict[Path, list[str]] = {}
    for image in sorted(directory.glob(f"{NAME_PREFIX}{recipe_.node_os.value}-*.qcow2")):
        if image == image_path(directory, recipe_):
            continue
        try:
            built = json.loads(manifest_path(image).read_text())["inputs"]
        except (OSError, ValueError, KeyError, TypeError):
            found[image] = ["no readable manifest beside it"]
            continue
        found[image] = differences(built, recipe_.inputs)
    return found


def differences(built: dict, wanted: dict, prefix: str = "") -> list[str]:
    """`key: built → wanted` for every input that differs (nested keys joined by dots)."""
    lines = []
    for key in sorted(set(built) | set(wanted)):
        old, new = built.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines += differences(old, new, f"{prefix}{key}.")
        elif old != new:
            lines.append(f"{prefix}{key}: {old} → {new}")
    return lines
