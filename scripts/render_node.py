"""Writes what one node of a stack gets (its user-data and every file) into a folder, for reading.

    make render STACK=dev NODE=server-0                  # secrets and certificates as <markers>
    make render STACK=dev NODE=server-0 SHOW_SECRETS=1   # real values from the deployed stack's state

Without --show-secrets nothing but the repository is read. With it, the values come from
`pulumi stack export --show-secrets` (or a file of that output given with --state), and the folder
is made readable by its owner only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from components.nodes import node_config
from components.nodes.node_config import NodeMaterial, NodeSpec, Role, SsmSecrets
from components.nodes.node_plan import cluster_spec, node_specs
from components.pki.cluster_secrets import CA_SUFFIX, CLIENT_SUFFIX, GOSSIP_KEYS, PRESET_TOKENS
from scripts.stack_files import ROOT, pulumi_json, stack_settings

# The name main.py gives its ClusterSecrets; children are named `<this>-<suffix>`.
SECRETS_COMPONENT = "cluster"
_SECRET_SIG = "4dabf18193072939515e22adb298388d"


def marker_material(node_name: str, node: NodeSpec) -> NodeMaterial:
    server = node.role is Role.SERVER
    cert_owner = node_name if server else "the shared client certificate"
    return NodeMaterial(
        ca_pem="<cluster CA certificate>\n",
        cert_pem=f"<certificate of {cert_owner}>\n",
        key_pem=f"<private key of {cert_owner}>\n",
        **{attr: f"<{attr.replace('_', ' ')}>" for attr in GOSSIP_KEYS if server or attr == "consul_gossip_key"},
        **{
            attr: f"<{attr.replace('_', ' ')}>"
            for attr in PRESET_TOKENS
            if attr in NodeMaterial.__dataclass_fields__
            and (server or attr in ("consul_agent_token", "consul_nomad_agent_token"))
        },
    )


def _plain(value: Any) -> Any:
    """A value from `stack export`: secrets come as {sig, plaintext} with --show-secrets."""
    if isinstance(value, dict) and _SECRET_SIG in value:
        if "plaintext" not in value:
            raise SystemExit("the state export holds encrypted secrets: export it with --show-secrets")
        return json.loads(value["plaintext"])
    return value


def state_material(export: dict, node_name: str, node: NodeSpec) -> NodeMaterial:
    outputs: dict[tuple[str, str], dict] = {}
    for resource in export.get("deployment", {}).get("resources", []):
        outputs[(resource["type"], resource["urn"].rsplit("::", 1)[-1])] = resource.get("outputs", {})

    def output(typ: str, suffix: str, key: str) -> str:
        name = f"{SECRETS_COMPONENT}-{suffix}"
        try:
            return _plain(outputs[(typ, name)][key])
        except KeyError:
            raise SystemExit(f"the state has no {typ} named {name!r} with {key!r}: deploy the stack first") from None

    server = node.role is Role.SERVER
    cert = node_name if server else CLIENT_SUFFIX
    values = marker_material(node_name, node).__dict__ | {
        "ca_pem": output("tls:index/selfSignedCert:SelfSignedCert", CA_SUFFIX, "certPem"),
        "cert_pem": output("tls:index/locallySignedCert:LocallySignedCert", cert, "certPem"),
        "key_pem": output("tls:index/privateKey:PrivateKey", cert, "privateKeyPem"),
    }
    for attr, suffix in GOSSIP_KEYS.items():
        if values.get(attr) is not None:
            values[attr] = output("random:index/randomBytes:RandomBytes", suffix, "base64")
    for attr, suffix in PRESET_TOKENS.items():
        if values.get(attr) is not None:
            values[attr] = output("random:index/randomUuid:RandomUuid", suffix, "result")
    return NodeMaterial(**values)


def render(stack: str, node_name: str, out: Path, state: dict | None) -> list[Path]:
    settings = stack_settings(stack)
    nodes = node_specs(settings)
    if node_name not in nodes:
        raise SystemExit(f"stack {stack} has no node {node_name!r}; its nodes: {', '.join(nodes)}")
    node = nodes[node_name]
    cluster = cluster_spec(settings)
    material = state_material(state, node_name, node) if state else marker_material(node_name, node)

    out.mkdir(parents=True, exist_ok=True)
    if state:
        out.chmod(0o700)
    written = [out / "user-data"]
    written[0].write_text(node_config.user_data(cluster, node, material))
    for f in node_config.node_files(cluster, node, material):
        target = out / "files" / f.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.content)
        target.chmod(int(f.mode, 8))
        written.append(target)
    if isinstance(cluster.delivery, SsmSecrets):
        parameters = out / "ssm-parameters.json"
        parameters.write_text(json.dumps(node_config.secret_parameters(cluster, node, material), indent=2) + "\n")
        parameters.chmod(0o600)
        written.append(parameters)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--node", default="server-0", help="e.g. server-0, client-0 (libvirt) or client (aws)")
    parser.add_argument("--out", type=Path, help="default: rendered/<stack>/<node>")
    parser.add_argument("--show-secrets", action="store_true", help="real values from the stack's state")
    parser.add_argument("--state", type=Path, help="a `pulumi stack export --show-secrets` file to read instead")
    args = parser.parse_args(argv)
    state = None
    if args.show_secrets:
        state = (
            json.loads(args.state.read_text())
            if args.state
            else pulumi_json(args.stack, "stack", "export", "--show-secrets")
        )
    out = args.out or ROOT / "rendered" / args.stack / args.node
    written = render(args.stack, args.node, out, state)
    print(f"wrote {len(written)} files for {args.node} of stack {args.stack} to {os.path.relpath(out)}")
    if not state:
        print("secrets and certificates are <markers>; SHOW_SECRETS=1 reads the real ones from the stack's state")
    return 0


if __name__ == "__main__":
    sys.exit(main())
