"""`make boot-test`: every node's user-data boots a real VM, under real cloud-init and systemd.

    make boot-test                       # build (once, with sudo) the image, boot a server, a client, a failure run
    python -m scripts.boot_test --keep   # keep the work directory (consoles, disks, facts) afterwards

1. a Debian 12 image shaped like Debian's genericcloud one, built with debootstrap (build-image.sh;
   root needed, once) and cached in $XDG_CACHE_HOME/hashistack/boot-test/;
2. the dev stack's settings with nodeOs debian-12 and the package sources pointed at this host: a
   signed apt repository of stand-in consul, nomad, vault and consul-cni packages at the pinned
   versions (standins.py) and a stand-in CNI plugins release, served over HTTPS with a certificate from
   the image's own test CA, which the image trusts (the one addition to Debian's image);
3. server-0 and client-0 rendered with the project's own code (node_config.user_data, the libvirt
   platform's network-config and meta-data) and real certificates from that CA, each booted by QEMU
   on a user network with the libvirt network's addresses (192.168.142.0/24, .1 routing; QEMU resolves
   on .2, which the network-config names instead of .1: the one change to what the platform renders);
4. the baked image (`make image`'s own builder, scripts/node_image.py: virt-customize runs the boot
   script as ROLE=image in a copy of the image, from the stand-in repository) cached beside the image,
   keyed by its recipe's name; the repository's signing key is kept with it, as the name carries its
   fingerprint;
5. in a first wave client-0 from the stock image beside server-0 from the baked one, in a second
   client-0 from the baked image beside the failure run: the report gives client-0's two times and
   their ratio;
6. the failure run, a server from the baked image whose settings pin another Nomad (a stale image:
   the script must see it and install) and whose package source refuses connections, must end with
   one FAILED line within the boot script's retry budget;
7. the verdict is read from each serial console; then node_facts.py runs in the VM over SSH and
   checks.py asserts the files, units, resolver and the install path the image called for, that each
   agent started once (after its configuration, by the boot script) and that no two nodes share a
   machine ID. Writes boot-test-report.json; exits 1 on any problem.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import functools
import hashlib
import http.server
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from components.config.node_os import RELEASES, NodeOs
from components.config.settings import PackageSource, Settings, Versions
from components.nodes import node_config
from components.nodes.node_config import ClusterSpec, NodeMaterial, NodeSpec, Role, envoy_image
from components.nodes.node_image import ImageRecipe, manifest_path, stale_images
from components.nodes.node_plan import cluster_spec, node_specs
from components.pki.cluster_secrets import ClusterSecretsArgs, client_dns_names, server_dns_names
from components.platforms.libvirt.seed import meta_data, network_config
from components.platforms.libvirt.user_dirs import user_dir
from scripts import node_image
from scripts.boot_test import checks, standins
from scripts.boot_test.pki import ThrowawayCa
from scripts.boot_test.registry import Registry
from scripts.boot_test.vm import (
    Image,
    Machine,
    Ssh,
    dns_address,
    free_port,
    kvm_usable,
    missing_tools,
    seed_iso,
    ssh_key,
)
from scripts.stack_files import ROOT, stack_settings

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-image.sh"
MIRROR = "http://deb.debian.org/debian"
NODE_OS = NodeOs.DEBIAN_12
# The bootstrap's retry budget for one network step: 10 attempts, waits of 5, 10, ... 45 s between
# them (hashistack-bootstrap.sh, retry) plus each attempt's own connect timeout, with a margin.
RETRY_BUDGET_SECONDS = sum(5 * n for n in range(1, 10)) + 10 * 10 + 60
FAILING_STEP = "adding the HashiCorp apt repository"
# The image trusts its own package-server CA; rebuild the image (delete it from the cache) after this.
IMAGE_CA_DAYS = 3650
# Each boot: the node it boots, whether from the baked image, its time limit, memory and vCPUs, and its
# wave. Two waves of two VMs (four at once on two cores under emulation slow every boot two- to
# threefold, the short ones most), each measured client beside a companion of the same shape: a server
# booting the baked image, up to its boot script the same work. The failure run's image is stale (its
# settings pin another Nomad), so it takes the install path and fails at the package source.
BOOTS = {
    "client-0": ("client-0", False, 1200, 3072, 2, 1),
    "server-0": ("server-0", True, 900, 1536, 2, 1),
    "client-0-baked": ("client-0", True, 900, 3072, 2, 2),
    "failure": ("server-0", True, 1200, 1536, 2, 2),
}
# The comparison the report gives: the same node from the stock and from the baked image.
STOCK_BOOT, BAKED_BOOT = "client-0", "client-0-baked"
RATIO_GOAL = 1 / 3
# The address of the host (where the package server listens) from libguestfs's appliance, which bakes
# the image on QEMU's user network 169.254.0.0/16 (seen in the appliance: `default via 169.254.2.2`).
APPLIANCE_HOST = "169.254.2.2"
REPOSITORY_KEY_EXPIRES = "10y"


def cache_dir() -> Path:
    return user_dir("XDG_CACHE_HOME", ".cache") / "hashistack" / "boot-test"


def image(log) -> Image:
    """The cached image, built first (with sudo unless root) when the build script or the mirror changed."""
    key = hashlib.sha256(BUILD_SCRIPT.read_bytes() + MIRROR.encode()).hexdigest()[:16]
    directory = cache_dir() / f"debian-12-{key}"
    built = Image(directory / "rootfs.ext4", directory / "vmlinuz", directory / "initrd.img", directory / "package-ca")
    if built.rootfs.exists():
        log(f"image: {directory} (cached)")
        return built
    log(f"image: building {directory} with debootstrap from {MIRROR} (a few minutes, once; as root)")
    cache_dir().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=cache_dir()))
    started = time.monotonic()
    # The package server's CA lives (and is trusted) with the image, for the image's lifetime.
    ThrowawayCa(staging / "package-ca", days=IMAGE_CA_DAYS)
    as_root = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*as_root, str(BUILD_SCRIPT), str(staging), MIRROR, str(staging / "package-ca/ca.pem")], check=True)
    if as_root:  # the cache is the user's
        subprocess.run(["sudo", "chown", "-R", f"{os.getuid()}:{os.getgid()}", str(staging)], check=True)
    staging.rename(directory)
    log(f"image: built in {time.monotonic() - started:.0f} s")
    return built


class PackageServer:
    """HTTPS on 127.0.0.1 (QEMU's user network maps its host address there) serving `root`."""

    def __init__(self, root: Path, cert: Path, key: Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_) -> None:
        pass


def material(ca: ThrowawayCa, settings: Settings, cluster: ClusterSpec, name: str, node: NodeSpec) -> NodeMaterial:
    """Real keys and tokens of the shapes ClusterSecrets makes, the certificate named as it names them."""
    args = ClusterSecretsArgs(cluster.datacenter, cluster.region, cluster.domain, [], 1, 1, 0)
    server = node.role is Role.SERVER
    names = server_dns_names(args, name) if server else client_dns_names(args)
    issued = ca.issue(name, names, ["127.0.0.1", node.address] if server else ["127.0.0.1"])
    gossip = base64.b64encode(secrets.token_bytes(32)).decode()
    return NodeMaterial(
        ca_pem=ca.cert_pem,
        cert_pem=issued.cert_pem,
        key_pem=issued.key_pem,
        consul_gossip_key=gossip,
        consul_agent_token=str(uuid.uuid4()),
        consul_nomad_agent_token=str(uuid.uuid4()),
        consul_management_token=str(uuid.uuid4()) if server else None,
        nomad_gossip_key=gossip if server else None,
        consul_vault_token=str(uuid.uuid4()) if server else None,
    )


@dataclass
class Result:
    name: str
    verdict: str | None = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    bootstrap_seconds: float | None = None
    """The boot script's own run, from its first log line to `done`."""
    machine_id: str = ""


def baked(stock: Image, versions, fingerprint: str, port: int, registry_port: int, tcg: bool, log) -> Image:
    """The baked image of the boot test's settings over `stock`, built by `make image`'s builder."""
    source = f"https://{APPLIANCE_HOST}:{port}"
    recipe = ImageRecipe(NODE_OS, stock.rootfs.parent.name, versions, PackageSource(
        f"{source}/hashicorp", fingerprint, f"{source}/cni", f"https://{APPLIANCE_HOST}:{registry_port}"))  # fmt: skip
    directory = stock.rootfs.parent / "baked"
    path = node_image.build(stock.rootfs, "raw", recipe, directory, grow_root=False, tcg=tcg, log=log)
    # The boot test boots only its current recipe's image: one of other inputs (a changed script, other
    # versions) is 2 GB it never boots again. A user's images are theirs to delete (README).
    for stale, changed in stale_images(directory, recipe).items():
        log(f"image: removing {stale.name}, built with {'; '.join(changed)}")
        stale.unlink()
        manifest_path(stale).unlink(missing_ok=True)
    return dataclasses.replace(stock, rootfs=path, format="qcow2")


def run_node(name: str, settings: Settings, node: NodeSpec, user_data: str, key: Path,
             image_: Image, kvm: bool, work: Path, log) -> Result:  # fmt: skip
    result = Result(name)
    _, from_baked, timeout, memory_mib, vcpus, _ = BOOTS[name]
    cluster = cluster_spec(settings)
    seed = seed_iso(work / f"{name}-seed", {
        "user-data": user_data,
        "meta-data": meta_data(node.name, user_data),
        "network-config": qemu_network_config(settings, node.address),
    })  # fmt: skip
    machine = Machine(name, image_, work, settings.network_cidr, node.address, kvm, memory_mib, vcpus)
    machine.boot(seed)
    log(f"{name}: booting the {'baked' if from_baked else 'stock'} image ({'KVM' if kvm else 'TCG'}), "
        f"console {machine.console}")  # fmt: skip
    try:
        result.verdict = machine.wait_for_verdict(timeout)
        result.seconds = machine.elapsed()
        log(f"{name}: {result.verdict or 'no verdict'} after {result.seconds:.0f} s")
        console = machine.console_text()
        ssh = Ssh(key, machine.ssh_port)
        if result.verdict is None or not ssh.wait(180):
            result.problems.append(f"no verdict or no SSH; console tail:\n{console[-3000:]}")
            return result
        done = ssh.run(f"sudo python3 - {cluster.domain}", stdin=(HERE / "node_facts.py").read_text())
        if done.returncode != 0:
            result.problems.append(f"collecting facts failed: {done.stderr[-2000:]}")
            return result
        facts = json.loads(done.stdout)
        (work / f"{name}.facts.json").write_text(json.dumps(facts, indent=2))
        result.bootstrap_seconds = checks.step_seconds(facts["bootstrap_log"], checks.BOOTSTRAP_START, "done")
        result.machine_id = facts["machine_id"]
        if name == "failure":
            took = checks.step_seconds(facts["bootstrap_log"], FAILING_STEP)
            result.problems += checks.failure_problems(console, FAILING_STEP, RETRY_BUDGET_SECONDS, took)
            result.problems += checks.stale_image_problems(facts["bootstrap_log"], settings.versions.nomad)
        else:
            result.problems += checks.console_problems(console, result.verdict)
            result.problems += checks.file_problems(facts, checks.expected_files(cluster, node))
            result.problems += checks.unit_problems(facts, node.role)
            result.problems += checks.agent_start_problems(facts, node.role)
            result.problems += checks.resolver_problems(facts, cluster, node)
            result.problems += checks.install_path_problems(facts["bootstrap_log"], from_baked)
            result.problems += checks.envoy_problems(facts, node.role, from_baked, envoy_image(settings.versions))
        if result.problems:
            result.problems.append(
                "bootstrap log, last lines:\n" + "\n".join(facts["bootstrap_log"].splitlines()[-25:])
            )
        return result
    finally:
        machine.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--nodes", default=",".join(BOOTS), help=f"which boots to run, of {', '.join(BOOTS)}")
    parser.add_argument("--report", type=Path, default=ROOT / "boot-test-report.json")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {message}", flush=True)

    missing = missing_tools()
    if missing:
        print(f"boot test: missing host tools; install them: sudo apt-get install {' '.join(missing)}", file=sys.stderr)
        return 2
    image_ = image(log)
    work = Path(tempfile.mkdtemp(prefix="hashistack-boot-test-"))
    work.chmod(0o700)
    try:
        kvm = kvm_usable(image_, work)
        log(f"accelerator: {'KVM' if kvm else 'TCG (software; no usable /dev/kvm)'}")
        ca = ThrowawayCa(work / "pki")
        base = dev_settings()
        gateway = str(base.network_cidr[1])
        served = ThrowawayCa(work / "package-ca", source=image_.package_ca).issue(
            "package-server", [], [gateway, APPLIANCE_HOST, "127.0.0.1"]
        )
        www = work / "www"
        www.mkdir()
        debs = [
            standins.build_deb(p, work / "debs", (work / "debs").resolve()) for p in standins.packages(base.versions)
        ]
        repo = standins.apt_repository(www / "hashicorp", RELEASES[NODE_OS].codename, debs,
                                       image_.rootfs.parent / "repository-key", REPOSITORY_KEY_EXPIRES)  # fmt: skip
        standins.cni_release(base.versions.cni_plugins, www / "cni")
        server = PackageServer(www, served.cert_path, served.key_path)
        log(f"package server: https://{gateway}:{server.port}/ (127.0.0.1:{server.port}); key {repo.fingerprint}")
        registry = Registry(work / "registry", free_port(), served.cert_path, served.key_path,
                            image_.package_ca / "ca.pem")  # fmt: skip
        envoy = registry.push_standin_envoy(envoy_image(base.versions), work / "registry")
        log(f"Docker Hub stand-in: https://{gateway}:{registry.port}/ serving {envoy}")
        key, public_key = ssh_key(work)

        def settings_for(apt_port: int) -> Settings:
            return dev_settings({
                "hashicorpAptUrl": f"https://{gateway}:{apt_port}/hashicorp",
                "hashicorpKeyFingerprint": repo.fingerprint,
                "cniPluginsUrl": f"https://{gateway}:{server.port}/cni",
                "dockerHubMirror": f"https://{gateway}:{registry.port}",
                "sshAuthorizedKeys": [public_key],
            })  # fmt: skip

        good = settings_for(server.port)
        closed = dataclasses.replace(settings_for(_closed_port()), versions=stale_versions(good.versions))
        nodes = node_specs(good)
        wanted = [n for n in args.nodes.split(",") if n]
        unknown = set(wanted) - set(BOOTS)
        if unknown:
            raise SystemExit(f"--nodes: unknown {sorted(unknown)}; choose from {sorted(BOOTS)}")
        baked_image = None
        if any(BOOTS[name][1] for name in wanted):
            baked_image = baked(image_, good.versions, repo.fingerprint, server.port, registry.port, not kvm, log)
        jobs = {}
        for wave in sorted({BOOTS[name][5] for name in wanted}):
            in_wave = [name for name in wanted if BOOTS[name][5] == wave]
            with ThreadPoolExecutor(max_workers=len(in_wave)) as pool:
                for name in in_wave:
                    node_name, from_baked = BOOTS[name][:2]
                    settings, node = (closed if name == "failure" else good), nodes[node_name]
                    cluster = cluster_spec(settings)
                    user_data = node_config.user_data(cluster, node, material(ca, settings, cluster, node.name, node))
                    jobs[name] = pool.submit(run_node, name, settings, node, user_data, key,
                                             baked_image if from_baked else image_, kvm, work, log)  # fmt: skip
        results = [jobs[name].result() for name in wanted]
        by_name = {r.name: r for r in results}
        for name, problem in checks.shared_machine_ids({n: r.machine_id for n, r in by_name.items()}).items():
            by_name[name].problems.append(problem)
        server.close()
        registry.close()
        report = {
            "accelerator": "kvm" if kvm else "tcg",
            "seconds": round(time.monotonic() - started),
            "nodes": {
                r.name: {"verdict": r.verdict, "seconds": round(r.seconds), "problems": r.problems} for r in results
            },
            "stock_vs_baked": comparison(by_name),
        }
        args.report.write_text(json.dumps(report, indent=2) + "\n")
        for r in results:
            print(f"{'PASS' if not r.problems else 'FAIL'} {r.name}: {r.verdict} ({r.seconds:.0f} s)")
            for problem in r.problems:
                print("    " + problem.replace("\n", "\n    "))
        if report["stock_vs_baked"]:
            print(ratio_line(report["stock_vs_baked"]))
        log(f"boot test done; report {args.report}")
        failed = any(r.problems for r in results)
        if failed or args.keep:
            print(f"work directory kept: {work}")
    except BaseException:
        print(f"work directory kept: {work}", file=sys.stderr)
        raise
    if not (failed or args.keep):
        shutil.rmtree(work)
    return 1 if failed else 0


def comparison(results: dict[str, Result]) -> dict | None:
    """Both boots of the same node, when both ran to `done`: their times and baked / stock."""
    stock, baked_ = results.get(STOCK_BOOT), results.get(BAKED_BOOT)
    if not (stock and baked_ and stock.verdict and baked_.verdict and stock.seconds > 0):
        return None
    if "done" not in stock.verdict or "done" not in baked_.verdict:
        return None
    ratio = baked_.seconds / stock.seconds
    # What the baked boot would be with no boot script at all: the most an image can take off, and so
    # the ratio's floor on this host (kernel, systemd and cloud-init are the same work on either image).
    floor = None if baked_.bootstrap_seconds is None else (baked_.seconds - baked_.bootstrap_seconds) / stock.seconds
    return {"node": BOOTS[STOCK_BOOT][0], "stock_seconds": round(stock.seconds), "baked_seconds": round(baked_.seconds),
            "ratio": round(ratio, 3), "goal": round(RATIO_GOAL, 3), "met": ratio <= RATIO_GOAL,
            # The boot script's part alone: the rest (firmware, kernel, systemd, cloud-init) is the same
            # work on both images.
            "stock_bootstrap_seconds": stock.bootstrap_seconds, "baked_bootstrap_seconds": baked_.bootstrap_seconds,
            "ratio_without_script": None if floor is None else round(floor, 3)}  # fmt: skip


def ratio_line(found: dict) -> str:
    line = (f"{found['node']}: stock image {found['stock_seconds']} s, baked image {found['baked_seconds']} s to "
            f"'hashistack-bootstrap: done'; baked/stock = {found['ratio']:.2f} (goal <= {found['goal']:.2f}: "
            f"{'met' if found['met'] else 'NOT met'})")  # fmt: skip
    scripts = found["stock_bootstrap_seconds"], found["baked_bootstrap_seconds"]
    if None not in scripts:
        line += f"; the boot script alone: {scripts[0]} s and {scripts[1]} s"
    return line + floor_words(found)


def floor_words(found: dict) -> str:
    """The ratio's floor, in words, when the report has one (a report of an earlier version has not)."""
    floor = found.get("ratio_without_script")
    return "" if floor is None else f"; with no boot script at all the baked boot would be {floor:.2f} of the stock one"


def qemu_network_config(settings: Settings, address: str) -> str:
    """The libvirt platform's network-config with one change: the resolver is QEMU's DNS address,
    since QEMU cannot resolve on the gateway address as libvirt's dnsmasq does (vm.dns_address)."""
    config = yaml.safe_load(network_config(settings, address))
    for interface in config["ethernets"].values():
        interface["nameservers"]["addresses"] = [str(dns_address(settings.network_cidr))]
    return yaml.safe_dump(config, sort_keys=True)


def dev_settings(overrides: dict | None = None) -> Settings:
    return stack_settings("dev", {"nodeOs": NODE_OS.value, **(overrides or {})})


def stale_versions(versions: Versions) -> Versions:
    """The pinned versions with Nomad one patch release on: what a baked image of `versions` lacks."""
    major, minor, patch = versions.nomad.split(".")
    return dataclasses.replace(versions, nomad=f"{major}.{minor}.{int(patch) + 1}")


def _closed_port() -> int:
    """A local port nothing listens on: the failure run's package source refuses connections."""
    return free_port()


if __name__ == "__main__":
    sys.exit(main())
