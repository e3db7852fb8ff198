"""`make render`: what one node gets, written to a folder, with markers or with the state's values."""

from __future__ import annotations

import json
import stat

import pytest

from scripts.render_node import main

from conftest import SECRET_SIG, appears, run_program


def test_markers_by_default(tmp_path):
    assert main(["--stack", "dev", "--node", "server-0", "--out", str(tmp_path)]) == 0
    files = tmp_path / "files"
    assert (tmp_path / "user-data").read_text().startswith("#cloud-config\n")
    assert (files / "etc/hashistack/tls/node-key.pem").read_text() == "<private key of server-0>\n"
    assert '"<consul gossip key>"' in (files / "etc/consul.d/secrets.hcl").read_text()
    assert "PRIVATE KEY" not in (tmp_path / "user-data").read_text()
    assert stat.S_IMODE((files / "etc/hashistack/tls/node-key.pem").stat().st_mode) == 0o600


def test_aws_client_lists_its_parameters(tmp_path):
    main(["--stack", "aws", "--node", "client", "--out", str(tmp_path)])
    parameters = json.loads((tmp_path / "ssm-parameters.json").read_text())
    assert sorted(parameters) == [
        f"/hashistack/aws/clients/{n}" for n in ("consul-secrets", "nomad-secrets", "tls-key")
    ]
    assert not (tmp_path / "files/etc/vault.d").exists(), "clients get no Vault server files"


def test_unknown_node_names_the_nodes_there_are(tmp_path):
    with pytest.raises(
        SystemExit, match="stack dev has no node 'client-7'; its nodes: server-0, server-1, server-2, client-0"
    ):
        main(["--stack", "dev", "--node", "client-7", "--out", str(tmp_path)])


def _export_of(monitor) -> dict:
    """What `pulumi stack export --show-secrets` prints for the mocked deployment."""

    def value(registration, key, v):
        return (
            {SECRET_SIG and next(iter(SECRET_SIG)): next(iter(SECRET_SIG.values())), "plaintext": json.dumps(v)}
            if key in registration.secret_outputs
            else v
        )

    return {
        "deployment": {
            "resources": [
                {"urn": r.urn, "type": r.type, "outputs": {k: value(r, k, v) for k, v in r.outputs.items()}}
                for r in monitor.registrations
            ]
        }
    }


def test_show_secrets_reads_the_state(tmp_path):
    monitor = run_program("dev", preview=True)
    state = tmp_path / "export.json"
    state.write_text(json.dumps(_export_of(monitor)))
    out = tmp_path / "server-1"
    main(["--stack", "dev", "--node", "server-1", "--out", str(out), "--show-secrets", "--state", str(state)])
    key = next(r for r in monitor.of_type("tls:index/privateKey:PrivateKey") if r.name == "cluster-server-1")
    gossip = next(
        r for r in monitor.of_type("random:index/randomBytes:RandomBytes") if r.name == "cluster-consul-gossip"
    )
    assert (out / "files/etc/hashistack/tls/node-key.pem").read_text() == key.outputs["privateKeyPem"]
    assert appears(gossip.outputs["base64"], (out / "user-data").read_text())
    assert "<" not in (out / "files/etc/consul.d/secrets.hcl").read_text(), "a marker was left"
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
