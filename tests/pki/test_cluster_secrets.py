"""ClusterSecrets under mocks: certificate names, key usages, signing edges, parents and secretness."""

from __future__ import annotations

import ipaddress

import pulumi
import pytest

from components.pki.cluster_secrets import ClusterSecrets, ClusterSecretsArgs, ServerIdentity

from conftest import is_secret, run_pulumi, unwrap

ARGS = dict(
    datacenter="eu1",
    region="europe",
    domain="hashi.internal",
    ca_validity_hours=87600,
    cert_validity_hours=2160,
    cert_early_renewal_hours=240,
)
NLB_NAME = "api-1234.elb.eu-central-1.amazonaws.com"


def _build():
    # Addresses arrive as Outputs, as they do from ENIs/EIPs on AWS.
    servers = [
        ServerIdentity(
            "server-0", pulumi.Output.from_input(["10.1.0.10", "198.51.100.20"]), pulumi.Output.from_input([NLB_NAME])
        ),
        ServerIdentity("server-1", ["10.1.16.10"]),
    ]
    secrets = ClusterSecrets("test", ClusterSecretsArgs(servers=servers, **ARGS))
    pulumi.export("token", secrets.nomad_bootstrap_token)
    pulumi.export("gossip", secrets.consul_gossip_key)
    pulumi.export("serverKey", secrets.servers["server-0"].private_key_pem)
    pulumi.export("ca", secrets.ca_cert_pem)


@pytest.fixture(scope="module")
def monitor():
    return run_pulumi(_build)


def request_of(monitor, name):
    return unwrap(monitor.one("tls:index/certRequest:CertRequest", name).inputs)


def test_server_certificate_names_make_hostname_verification_work(monitor):
    request = request_of(monitor, "test-server-0")
    assert request["subject"]["commonName"] == "server.eu1.hashi.internal"
    expected = {
        "server.eu1.hashi.internal",  # Consul verify_server_hostname
        "server.europe.nomad",  # Nomad verify_server_hostname
        "vault.service.hashi.internal",
        "active.vault.service.hashi.internal",
        "server-0",
        "localhost",
        NLB_NAME,
    }
    assert expected <= set(request["dnsNames"]), request["dnsNames"]
    assert set(request["ipAddresses"]) == {"127.0.0.1", "10.1.0.10", "198.51.100.20"}


def test_each_server_gets_its_own_addresses(monitor):
    request = request_of(monitor, "test-server-1")
    assert set(request["ipAddresses"]) == {"127.0.0.1", "10.1.16.10"}
    assert "server-1" in request["dnsNames"] and "server-0" not in request["dnsNames"]
    assert NLB_NAME not in request["dnsNames"]


def test_ips_are_ip_sans_never_dns_names(monitor):
    for registration in monitor.of_type("tls:index/certRequest:CertRequest"):
        inputs = unwrap(registration.inputs)
        for name in inputs.get("dnsNames", []):
            with pytest.raises(ValueError):
                ipaddress.ip_address(name)
        for ip in inputs.get("ipAddresses", []):
            ipaddress.ip_address(ip)


def test_client_and_operator_certificates(monitor):
    client = request_of(monitor, "test-client")
    assert client["subject"]["commonName"] == "client.europe.nomad"
    assert set(client["dnsNames"]) == {"client.europe.nomad", "client.eu1.hashi.internal", "localhost"}
    assert client["ipAddresses"] == ["127.0.0.1"]
    operator = request_of(monitor, "test-operator")
    assert operator["subject"]["commonName"] == "cli.client.eu1.hashi.internal"


def test_key_usages(monitor):
    signed = {r.name: unwrap(r.inputs) for r in monitor.of_type("tls:index/locallySignedCert:LocallySignedCert")}
    assert set(signed) == {"test-server-0", "test-server-1", "test-client", "test-operator"}
    for name in ("test-server-0", "test-server-1", "test-client"):
        assert set(signed[name]["allowedUses"]) == {
            "digital_signature",
            "key_encipherment",
            "server_auth",
            "client_auth",
        }
    # An operator's certificate must not be able to impersonate a server.
    assert "server_auth" not in signed["test-operator"]["allowedUses"]
    assert "client_auth" in signed["test-operator"]["allowedUses"]


def test_ca(monitor):
    (ca,) = monitor.of_type("tls:index/selfSignedCert:SelfSignedCert")
    inputs = unwrap(ca.inputs)
    assert inputs["isCaCertificate"] is True
    assert sorted(inputs["allowedUses"]) == ["cert_signing", "crl_signing"]
    assert inputs["validityPeriodHours"] == 87600
    for key in monitor.of_type("tls:index/privateKey:PrivateKey"):
        assert (key.inputs["algorithm"], key.inputs["ecdsaCurve"]) == ("ECDSA", "P256"), key.urn


def test_every_certificate_is_signed_by_the_cluster_ca_with_configured_lifetime(monitor):
    (ca,) = monitor.of_type("tls:index/selfSignedCert:SelfSignedCert")
    ca_key = monitor.one("tls:index/privateKey:PrivateKey", "test-ca")
    for cert in monitor.of_type("tls:index/locallySignedCert:LocallySignedCert"):
        inputs = cert.inputs
        assert unwrap(inputs["caCertPem"]) == ca.outputs["certPem"], cert.urn
        assert is_secret(inputs["caPrivateKeyPem"]), f"{cert.urn}: CA key sent in plain text"
        assert unwrap(inputs["caPrivateKeyPem"]) == ca_key.outputs["privateKeyPem"], cert.urn
        assert {ca.urn, ca_key.urn} <= cert.dependencies, cert.urn
        assert (inputs["validityPeriodHours"], inputs["earlyRenewalHours"]) == (2160, 240), cert.urn


def test_gossip_keys_are_32_random_bytes_with_nothing_that_regenerates_them(monitor):
    gossip = monitor.of_type("random:index/randomBytes:RandomBytes")
    assert sorted(r.name for r in gossip) == ["test-consul-gossip", "test-nomad-gossip"]
    for registration in gossip:
        # `keepers` would regenerate the key (and split the gossip ring) whenever they change.
        assert registration.inputs == {"length": 32}, registration.urn


def test_preset_acl_secrets_are_secret_uuids(monitor):
    uuids = monitor.of_type("random:index/randomUuid:RandomUuid")
    assert sorted(r.name for r in uuids) == [
        "test-consul-agent",
        "test-consul-management",
        "test-consul-nomad-agent",
        "test-consul-vault",
        "test-nomad-bootstrap",
    ]
    for registration in uuids:
        assert "result" in registration.secret_outputs, f"{registration.urn}: result stored in plain text"


def test_children_are_parented_to_the_component(monitor):
    (component,) = monitor.of_type("hashistack:secrets:ClusterSecrets")
    children = [r for r in monitor.registrations if r is not component]
    assert len(children) == 1 + 1 + 4 * 3 + 2 + 5  # CA key+cert, 4 issued certs, 2 gossip, 5 tokens
    for child in children:
        assert child.parent == component.urn, child.urn


def test_component_outputs_are_secret_where_private(monitor):
    outputs = monitor.stack_outputs
    for name in ("token", "gossip", "serverKey"):
        assert is_secret(outputs[name]), f"{name} exported in plain text"
    assert not is_secret(outputs["ca"])
    assert outputs["ca"].startswith("-----BEGIN CERTIFICATE-----")
