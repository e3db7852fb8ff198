"""The libvirt nodes' base image: a pinned file, checked against its SHA-256 before libvirt gets it,
or the project's baked image (components/nodes/node_image.py), found by its name in the same cache.

The provider would stream a URL into the pool itself, once, with no checksum and no resume
(terraform-provider-libvirt v0.8.1 libvirt/volume_image.go httpImage.Import), and the pool directory is
closed to the operator. So the program downloads the image into the operator's cache, keyed by its
SHA-256, checks it, and hands libvirt the local file. A file given in the settings is checked the same
way. Nothing is downloaded during a preview: the cached path is known without the bytes.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlparse

import pulumi

from components.nodes.node_image import ImageRecipe, image_path, stale_images
from components.platforms.libvirt.user_dirs import user_dir

CHUNK = 1024 * 1024
TIMEOUT_SECONDS = 60


class BaseImageError(pulumi.RunError):
    """The base image cannot be had, or is not the one pinned."""


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME/hashistack/images, else ~/.cache/hashistack/images (components/platforms/libvirt/user_dirs.py)."""
    return user_dir("XDG_CACHE_HOME", ".cache", environ) / "hashistack" / "images"


def cached_path(url: str, sha256: str, directory: Path) -> Path:
    """Where the image of `url` lives once checked: named by its checksum, so a new pin is a new file."""
    suffix = Path(urlparse(url).path).suffix or ".img"
    return directory / f"{sha256}{suffix}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as image:
        while chunk := image.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_verified(
    url: str,
    sha256: str,
    destination: Path,
    *,
    context: ssl.SSLContext | None = None,
    log: Callable[[str], None] = pulumi.log.info,
) -> Path:
    """Downloads `url` into `destination`, which appears only once its SHA-256 is `sha256`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    log(f"downloading the base image {url} into {destination.parent}")
    with tempfile.NamedTemporaryFile(dir=destination.parent, prefix=".download-", delete=False) as partial:
        try:
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS, context=context) as response:
                    total = int(response.headers.get("Content-Length") or 0)
                    done, reported = 0, 0
                    while chunk := response.read(CHUNK):
                        partial.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        # Every tenth, when the size is known.
                        if total and (tenths := done * 10 // total) > reported:
                            reported = tenths
                            log(f"base image: {tenths * 10}% of {total // CHUNK} MiB")
            except OSError as error:  # URLError, HTTPError and timeouts are OSErrors
                raise BaseImageError(
                    f"libvirtBaseImage: cannot download {url}: {error}. Check the host's network, or download the "
                    f"file yourself and set libvirtBaseImage to its path"
                ) from None
            if digest.hexdigest() != sha256:
                raise BaseImageError(
                    f"libvirtBaseImage: {url} has SHA-256 {digest.hexdigest()}, not the pinned {sha256} "
                    "(libvirtBaseImageSha256). The file behind the URL changed or was tampered with: pin the "
                    "image you mean, with its checksum from the release's SHA256SUMS"
                )
            partial.flush()
            os.replace(partial.name, destination)
        finally:
            Path(partial.name).unlink(missing_ok=True)
    return destination


def local_image(source: str, sha256: str, *, preview: bool, directory: Path | None = None, **download) -> str:
    """The local file libvirt gets for `source` (an https URL or a file), checked unless previewing."""
    if source.startswith("https://"):
        path = cached_path(source, sha256, directory or cache_dir())
        if not preview and not path.is_file():
            download_verified(source, sha256, path, **download)
        return str(path)
    path = Path(source)
    if not preview and sha256 and (found := file_sha256(path)) != sha256:
        raise BaseImageError(f"libvirtBaseImage: {path} has SHA-256 {found}, not {sha256} (libvirtBaseImageSha256)")
    return str(path)


def baked_image(recipe: ImageRecipe, *, preview: bool, directory: Path | None = None) -> str:
    """The baked image of `recipe`, built by `make image` into the image cache; an `up` without it
    stops and says which images there are instead and what they were built from (stale ones)."""
    directory = directory or cache_dir()
    path = image_path(directory, recipe)
    if preview or path.is_file():
        return str(path)
    stale = stale_images(directory, recipe)
    found = "".join(
        f"\n  - {image.name}, built with: {'; '.join(differ) or 'the same inputs'}" for image, differ in stale.items()
    )
    raise BaseImageError(
        f"nodeImage: 'baked' needs the image {path.name} in {directory}, which is not there. Build it with "
        f"`make image STACK={pulumi.get_stack()}` (`make up` does), or set nodeImage to stock"
        + (f". Stale images of other inputs there:{found}" if found else "")
    )
