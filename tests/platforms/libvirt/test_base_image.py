"""The base image: downloaded once into the operator's cache, checked, handed to libvirt as a file.

Served by a local HTTPS server; what the provider would do with a URL instead (one unverified stream,
no resume) is terraform-provider-libvirt v0.8.1 libvirt/volume_image.go httpImage.Import.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import ssl
from pathlib import Path

import pytest
from fake_https import serve_https

from components.nodes.node_image import image_path, manifest_path, recipe
from components.platforms.libvirt.base_image import (
    BaseImageError,
    baked_image,
    cache_dir,
    cached_path,
    download_verified,
    local_image,
)
from scripts.stack_files import stack_settings

IMAGE = hashlib.shake_256(b"noble").digest(3 * 1024 * 1024 + 17)  # not a whole number of chunks
SHA256 = hashlib.sha256(IMAGE).hexdigest()


@pytest.fixture
def image_server(pki, tmp_path):
    served = tmp_path / "served"
    (served / "release-20250704").mkdir(parents=True)
    (served / "release-20250704" / "noble.img").write_bytes(IMAGE)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    client = serve_https(server, pki)
    yield f"https://127.0.0.1:{server.server_address[1]}/release-20250704/noble.img", client, requests
    server.shutdown()
    server.server_close()


def test_an_image_url_is_downloaded_once_checked_and_named_by_its_checksum(image_server, tmp_path):
    url, context, requests = image_server
    cache = tmp_path / "home" / ".cache" / "images"  # made as needed
    logs: list[str] = []

    def log(line: str) -> None:
        logs.append(line)
        if line.startswith("base image:"):  # mid-download
            partial = [p.name for p in cache.iterdir() if p.name.startswith(".download-")]
            assert len(partial) == 1, "the partial file sits beside its destination (a rename, never a copy)"

    path = local_image(url, SHA256, preview=False, directory=cache, context=context, log=log)
    assert path == str(cache / f"{SHA256}.img") and (cache / f"{SHA256}.img").read_bytes() == IMAGE
    assert logs == [
        f"downloading the base image {url} into {cache}",
        "base image: 30% of 3 MiB",
        "base image: 60% of 3 MiB",
        "base image: 90% of 3 MiB",
        "base image: 100% of 3 MiB",
    ]
    again = local_image(url, SHA256, preview=False, directory=cache, context=context)
    assert again == path and len(requests) == 1, "the cached, checked file is used again"
    assert [p.name for p in cache.iterdir()] == [f"{SHA256}.img"], "no partial file left"
    copy = download_verified(url, SHA256, cache / "copy.img", context=context, log=lambda _: None)
    assert copy.read_bytes() == IMAGE, "a second download into the same directory"
    other = local_image(url.replace("noble", "other"), "0" * 64, preview=True, directory=cache)
    assert other == str(cache / f"{'0' * 64}.img"), "a second image beside the first"


def test_an_image_with_another_checksum_never_reaches_libvirt(image_server, tmp_path):
    url, context, _ = image_server
    pinned = "0" * 64
    with pytest.raises(BaseImageError) as caught:
        local_image(url, pinned, preview=False, directory=tmp_path / "cache", context=context, log=lambda _: None)
    assert str(caught.value) == (
        f"libvirtBaseImage: {url} has SHA-256 {SHA256}, not the pinned {pinned} (libvirtBaseImageSha256). The file"
        " behind the URL changed or was tampered with: pin the image you mean, with its checksum from the"
        " release's SHA256SUMS"
    )
    assert list((tmp_path / "cache").iterdir()) == [], "nothing cached, no partial file"


def test_an_unreachable_image_says_what_to_do(image_server, tmp_path):
    url, context, _ = image_server
    missing = url.replace("noble.img", "gone.img")
    with pytest.raises(BaseImageError, match=r"cannot download .*gone\.img: HTTP Error 404.*set libvirtBaseImage to"):
        local_image(missing, SHA256, preview=False, directory=tmp_path / "cache", context=context, log=lambda _: None)
    untrusted = ssl.create_default_context()  # the public CAs do not know the test server
    with pytest.raises(BaseImageError, match="CERTIFICATE_VERIFY_FAILED"):
        local_image(url, SHA256, preview=False, directory=tmp_path / "c2", context=untrusted, log=lambda _: None)


def test_a_preview_downloads_nothing(tmp_path):
    url = (
        "https://cloud-images-archive.ubuntu.com/releases/noble/release-20250704/ubuntu-24.04-server-cloudimg-amd64.img"
    )
    assert local_image(url, SHA256, preview=True, directory=tmp_path) == str(tmp_path / f"{SHA256}.img")
    assert list(tmp_path.iterdir()) == []


def test_a_local_file_is_checked_when_a_checksum_is_given(tmp_path):
    image = tmp_path / "noble.img"
    image.write_bytes(IMAGE)
    assert local_image(str(image), SHA256, preview=False) == str(image)
    assert local_image(str(image), "", preview=False) == str(image), "the check turned off"
    with pytest.raises(BaseImageError, match=f"has SHA-256 {SHA256}, not {'1' * 64}"):
        local_image(str(image), "1" * 64, preview=False)
    assert local_image(str(image), "1" * 64, preview=True) == str(image), "a preview reads no image"


def test_the_cache_follows_xdg():
    assert cache_dir({}) == Path.home() / ".cache" / "hashistack" / "images", "no HOME: the user's home"
    assert cache_dir({"HOME": "/home/op"}) == cache_dir({"HOME": "/home/op", "XDG_CACHE_HOME": ""})
    assert str(cache_dir({"HOME": "/home/op"})) == "/home/op/.cache/hashistack/images"
    assert str(cache_dir({"HOME": "/home/op", "XDG_CACHE_HOME": "/srv/cache"})) == "/srv/cache/hashistack/images"
    # The XDG Base Directory spec: a relative path is invalid and ignored.
    assert str(cache_dir({"HOME": "/home/op", "XDG_CACHE_HOME": "cache"})) == "/home/op/.cache/hashistack/images"
    assert cached_path("https://x/a/noble.qcow2", SHA256, cache_dir({"HOME": "/h"})).name == f"{SHA256}.qcow2"
    assert cached_path("https://x/a/noble", SHA256, cache_dir({"HOME": "/h"})).name == f"{SHA256}.img"
    assert cached_path("https://x.y/v1.2/noble?a.b", SHA256, Path("/c")).name == f"{SHA256}.img"


def test_a_missing_baked_image_names_each_stale_one_with_what_differs(tmp_path):
    """The image `make image` would build is not there: the message says so, how to build it, and each
    other image of the OS with the inputs it was built from (or that they are the same ones)."""
    wanted = recipe(stack_settings("dev", {"nomadVersion": "2.0.8"}))
    assert baked_image(wanted, preview=True, directory=tmp_path) == str(image_path(tmp_path, wanted))
    with pytest.raises(BaseImageError) as bare:
        baked_image(wanted, preview=False, directory=tmp_path)
    assert str(bare.value).endswith("or set nodeImage to stock"), "no stale image, no list"
    old = recipe(stack_settings("dev", {"nomadVersion": "2.0.7", "vaultVersion": "2.1.2"}))
    same = tmp_path / f"{wanted.name[:-12]}000000000000.qcow2"
    for image, inputs in ((image_path(tmp_path, old), old.inputs), (same, wanted.inputs)):
        image.write_bytes(b"")
        manifest_path(image).write_text(json.dumps({"inputs": inputs}))
    with pytest.raises(BaseImageError) as stale:
        baked_image(wanted, preview=False, directory=tmp_path)
    lines = str(stale.value).split("Stale images of other inputs there:")[1].splitlines()
    assert sorted(lines[1:]) == sorted([
        f"  - {old.name}.qcow2, built with: versions.nomad: 2.0.7 → 2.0.8; versions.vault: 2.1.2 → 2.1.1",
        f"  - {same.name}, built with: the same inputs",
    ]) and lines[0] == ""  # fmt: skip
    image_path(tmp_path, wanted).write_bytes(b"")
    assert baked_image(wanted, preview=False, directory=tmp_path) == str(image_path(tmp_path, wanted))
