#!/usr/bin/python3
"""Boot-test stand-in for the `consul`, `nomad`, `vault` and `consul-cni` binaries (one program,
installed under each name by scripts/boot_test/standins.py, which sets VERSION).

It models only what the boot script and systemd depend on, each from the product's source:
- it reads every configuration file its unit names, and every certificate and key those name, as the
  unit's user: an agent that cannot read its files stops with an error, as the real ones do;
- consul (`agent -config-dir=DIR`) notifies systemd READY=1 only once it has joined: a successful
  LAN join (hashicorp/consul agent/agent.go, JoinLAN: joinLANNotifier.Notify(systemd.Ready)). A
  client with `auto_encrypt { tls = true }` must first fetch its certificate from a server's RPC
  port (8300), so with no server it never gets that far, as a real client never does without the
  servers and its token. It answers HTTPS on 8501 and DNS on 8600 for `consul.service.<domain>`;
- nomad (`agent -config DIR`) notifies READY=1 once its listeners are up, without waiting for Consul
  (hashicorp/nomad command/agent/command.go@v2.0.5, handleSignals: sdNotify(sdSock, sdReady));
  it answers HTTPS on 4646 (/v1/agent/health);
- vault (`server -config=FILE`, Type=simple) answers HTTPS on 8200 (/v1/sys/health: 501, not
  initialised, as a new Vault does).
Python's standard library only: the guest has python3 (cloud-init's dependency) and nothing else.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time

VERSION = "@VERSION@"
PRODUCT = os.path.basename(sys.argv[0])
JOIN_INTERVAL = 2.0


def log(message: str) -> None:
    print(f"[{PRODUCT} stand-in] {message}", file=sys.stderr, flush=True)


def die(message: str) -> None:
    log(f"error: {message}")
    sys.exit(1)


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as error:
        die(f"loading {path}: {error.strerror}")
        raise


def config_text(paths: list[str]) -> str:
    """Every file of a config directory (*.hcl, *.json, in name order) or the one file, read."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError as error:
                die(f"reading config directory {path}: {error.strerror}")
            files += [os.path.join(path, n) for n in names if n.endswith((".hcl", ".json"))]
        else:
            files.append(path)
    if not files:
        die(f"no configuration files in {' '.join(paths)}")
    text = "\n".join(read(f) for f in files)
    # The certificates and keys the configuration names are read at start, as the agents do.
    for pem in sorted(set(re.findall(r'"(/[^"]+\.pem)"', text))):
        read(pem)
    return text


def setting(text: str, key: str, default: str = "") -> str:
    found = re.search(rf'^\s*{key}\s*=\s*"([^"]*)"', text, re.MULTILINE)
    return found.group(1) if found else default


def listing(text: str, key: str) -> list[str]:
    found = re.search(rf"^\s*{key}\s*=\s*\[([^\]]*)\]", text, re.MULTILINE)
    return re.findall(r'"([^"]+)"', found.group(1)) if found else []


def ports(text: str, defaults: dict[str, int]) -> dict[str, int]:
    """The `ports { name = N }` the configuration sets, over the product's defaults."""
    found = re.findall(r"^\s*([a-z_]+)\s*=\s*(-?\d+)\s*$", text, re.MULTILINE)
    return defaults | {name: int(value) for name, value in found if name in defaults}


def target(entry: str, default_port: int) -> tuple[str, int]:
    """A retry_join entry: `host` or `host:port`, as Consul accepts them."""
    host, _, port = entry.partition(":")
    return host, int(port) if port else default_port


def block_has(text: str, block: str, line: str) -> bool:
    found = re.search(rf"^{block}\s*{{(.*?)^}}", text, re.MULTILINE | re.DOTALL)
    return bool(found and re.search(line, found.group(1), re.MULTILINE))


def notify_ready() -> None:
    """sd_notify(3) READY=1 from the main process (Type=notify's default NotifyAccess=main)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(b"READY=1")
    log("notified systemd: READY=1")


def listen_tcp(address: str, port: int) -> None:
    """A TCP port that accepts and closes (serf, RPC): what a peer's join attempt reaches."""
    server = socket.create_server((address, port))

    def accept() -> None:
        while True:
            connection, _ = server.accept()
            connection.close()

    threading.Thread(target=accept, daemon=True).start()


def reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def serve_https(address: str, port: int, cert: str, key: str, routes: dict[str, tuple[int, object]]) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = routes.get(self.path.split("?")[0], (404, {"errors": ["not found"]}))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"HTTPS on {address}:{port}")


def serve_dns(port: int, names: dict[str, str]) -> None:
    """Answers A queries for `names` on 127.0.0.1 (UDP), NXDOMAIN for anything else."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))

    def answer() -> None:
        while True:
            query, peer = sock.recvfrom(512)
            ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
            labels, offset = [], 12
            while query[offset]:
                length = query[offset]
                labels.append(query[offset + 1 : offset + 1 + length].decode().lower())
                offset += length + 1
            question = query[12 : offset + 5]
            address = names.get(".".join(labels))
            if address:
                record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + socket.inet_aton(address)
                header = struct.pack("!HHHHHH", ident, 0x8580, qdcount, 1, 0, 0)
                sock.sendto(header + question + record, peer)
            else:
                sock.sendto(struct.pack("!HHHHHH", ident, 0x8583, qdcount, 0, 0, 0) + question, peer)

    threading.Thread(target=answer, daemon=True).start()
    log(f"DNS on 127.0.0.1:{port}")


def consul(args: list[str]) -> None:
    directories = [a.split("=", 1)[1] for a in args if a.startswith("-config-dir=")]
    text = config_text(directories)
    port = ports(text, {"server": 8300, "serf_lan": 8301, "https": 8501, "dns": 8600})
    bind = setting(text, "bind_addr", "0.0.0.0")
    server = bool(re.search(r"^server\s*=\s*true", text, re.MULTILINE))
    joins = [target(entry, port["serf_lan"]) for entry in listing(text, "retry_join")]
    if server:
        listen_tcp(bind, port["server"])
    else:
        # auto_encrypt { tls = true }: the certificate comes from a server's RPC port first
        # (Consul's auto-config runs before the agent starts its listeners or joins).
        log(f"auto-encrypt: asking the servers {[host for host, _ in joins]} for a certificate")
        while not any(reachable(host, port["server"]) for host, _ in joins):
            time.sleep(JOIN_INTERVAL)
    listen_tcp(bind, port["serf_lan"])
    serve_https(
        setting(text, "client_addr", "127.0.0.1"),
        port["https"],
        setting(text, "cert_file"),
        setting(text, "key_file"),
        {"/v1/status/leader": (200, f"{bind}:{port['server']}" if server else "")},
    )
    domain = setting(text, "domain", "consul").rstrip(".")
    serve_dns(port["dns"], {f"consul.service.{domain}": bind} if server else {})
    while True:
        joined_with = [f"{host}:{serf}" for host, serf in joins if reachable(host, serf)]
        if joined_with:
            log(f"joined {joined_with}")
            notify_ready()
            break
        time.sleep(JOIN_INTERVAL)
    threading.Event().wait()


def nomad(args: list[str]) -> None:
    paths = [args[i + 1] for i, a in enumerate(args) if a == "-config" and i + 1 < len(args)]
    text = config_text(paths)
    http_address = setting(text, "http", "0.0.0.0")
    role = "server" if block_has(text, "server", r"^\s*enabled\s*=\s*true") else "client"
    serve_https(
        http_address,
        ports(text, {"http": 4646})["http"],
        setting(text, "cert_file"),
        setting(text, "key_file"),
        {"/v1/agent/health": (200, {role: {"ok": True, "message": "ok"}})},
    )
    notify_ready()
    threading.Event().wait()


def vault(args: list[str]) -> None:
    paths = [a.split("=", 1)[1] for a in args if a.startswith("-config=")]
    text = config_text(paths)
    serve_https(
        "0.0.0.0",
        8200,
        setting(text, "tls_cert_file"),
        setting(text, "tls_key_file"),
        {"/v1/sys/health": (501, {"initialized": False, "sealed": True, "standby": True, "version": VERSION})},
    )
    threading.Event().wait()


def consul_cni() -> None:
    # A CNI plugin answers CNI_COMMAND=VERSION with the spec versions it supports.
    if os.environ.get("CNI_COMMAND") == "VERSION":
        print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}))
        return
    die("the stand-in consul-cni answers only CNI_COMMAND=VERSION")


def main() -> None:
    args = sys.argv[1:]
    if args[:1] in (["version"], ["-version"], ["--version"]):
        name = {"consul": "Consul", "nomad": "Nomad", "vault": "Vault"}.get(PRODUCT, PRODUCT)
        print(f"{name} v{VERSION} (boot-test stand-in)")
        return
    if PRODUCT == "consul-cni":
        consul_cni()
        return
    command = {"consul": ("agent", consul), "nomad": ("agent", nomad), "vault": ("server", vault)}.get(PRODUCT)
    if command is None or args[:1] != [command[0]]:
        die(f"unsupported invocation: {PRODUCT} {' '.join(args)}")
    log(f"v{VERSION} starting as uid {os.getuid()}")
    command[1](args[1:])


if __name__ == "__main__":
    main()
