"""A stand-in Docker Hub for the boot test: the registry Debian packages (docker-registry, the CNCF
Distribution registry 2.8, which Docker Hub's own protocol is), serving over HTTPS a stand-in Envoy at
the repository and tag Docker Hub has it under. The bake pulls Envoy from it as the stack's
dockerHubMirror (skopeo, in the image); the clients' Docker names it as its registry mirror.

The stand-in image is built with umoci (an OCI image layout holding one file, /usr/local/bin/envoy)
and pushed with skopeo, the tool the bake pulls with. No Connect task runs in the boot test, so no
Envoy ever starts: what the image holds, not what it does, is under test (README, Tests).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

DOCKER_HUB = "docker.io/"
START_SECONDS = 30


class Registry:
    """docker-registry on 127.0.0.1:`port` (QEMU's user networks map their host address there) with the
    given certificate; its storage, configuration and log under `work`."""

    def __init__(self, work: Path, port: int, cert: Path, key: Path, ca: Path):
        work.mkdir(parents=True)
        self.port, self.ca = port, ca
        config = work / "config.yml"
        config.write_text(yaml.safe_dump({
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(work / "storage")}},
            "http": {"addr": f"127.0.0.1:{port}", "tls": {"certificate": str(cert), "key": str(key)}},
        }))  # fmt: skip
        self.log = work / "registry.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
        self._wait()

    def _wait(self) -> None:
        """Until the registry answers GET /v2/ (the API's version check) with 200."""
        context = ssl.create_default_context(cafile=str(self.ca))
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/v2/", context=context, timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"docker-registry did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.5)

    def push_standin_envoy(self, image: str, work: Path) -> str:
        """Builds a stand-in of `image` (the nodes' Envoy, node_config.envoy_image) and pushes it where
        Docker Hub has it; returns that repository:tag."""
        reference = image.removeprefix(DOCKER_HUB)
        tag = reference.rpartition(":")[2]
        layout = work / "envoy-layout"
        program = work / "envoy"
        program.write_text("#!/bin/sh\necho 'stand-in envoy of the hashistack boot test'\n")
        program.chmod(0o755)
        rootless = [] if os.geteuid() == 0 else ["--rootless"]
        for command in (
            ["init", "--layout", str(layout)],
            ["new", "--image", f"{layout}:{tag}"],
            ["insert", *rootless, "--image", f"{layout}:{tag}", str(program), "/usr/local/bin/envoy"],
            ["config", *rootless, "--image", f"{layout}:{tag}", "--config.entrypoint", "/usr/local/bin/envoy"],
        ):
            subprocess.run(["umoci", *command], check=True, capture_output=True)
        certs = work / "registry-certs"  # skopeo's --dest-cert-dir: *.crt files are CAs to trust
        certs.mkdir()
        shutil.copy(self.ca, certs / "ca.crt")
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-cert-dir", str(certs), f"oci:{layout}:{tag}",
                        f"docker://127.0.0.1:{self.port}/{reference}"], check=True, capture_output=True)  # fmt: skip
        return reference

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
