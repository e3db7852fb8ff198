"""Bootstrap steps against local HTTPS servers that answer like Nomad, Consul and Vault: the happy path,
not yet ready, already done, a wrong secret and a timeout for each; TLS always verified."""

from __future__ import annotations

import ssl

import pytest
from fake_https import FakeTime, operator_tls

from components.bootstrap_steps import (
    BootstrapError,
    PresetToken,
    consul_preset_tokens,
    nomad_acl_bootstrap,
    vault_init,
    vault_sealed,
    vault_unseal,
)
from components.http_api import DeadlineExceeded, HttpsApi, Poller

SECRET = "11111111-aaaa-4aaa-8aaa-111111111111"
OTHER = "99999999-ffff-4fff-8fff-999999999999"


def poller(timeout: float = 60, time: FakeTime | None = None, logs: list | None = None) -> Poller:
    time = time or FakeTime()
    return Poller(timeout, 5, log=(logs if logs is not None else []).append, clock=time.clock, sleep=time.sleep)


# -- Nomad ------------------------------------------------------------------------------------------
class FakeNomad:
    """Nomad's ACL bootstrap: once, with the given secret; the leader appears after `leaderless` polls."""

    def __init__(self, api, leaderless: int = 0, bootstrapped_with: str | None = None):
        self.leaderless, self.management = leaderless, bootstrapped_with
        api.on("GET", "/v1/status/leader", self.leader)
        api.on("POST", "/v1/acl/bootstrap", self.bootstrap)
        api.on("GET", "/v1/acl/token/self", self.self_token)

    def leader(self, _seen):
        if self.leaderless:
            self.leaderless -= 1
            return 500, "No cluster leader"
        return 200, "10.42.0.10:4647"

    def bootstrap(self, seen):
        if self.management:
            return 400, "ACL bootstrap already done (reset index: 42)"
        self.management = seen.body["BootstrapSecret"]
        return 200, {"AccessorID": "acc-nomad", "SecretID": self.management, "Type": "management"}

    def self_token(self, seen):
        if seen.headers.get("X-Nomad-Token") == self.management:
            return 200, {"AccessorID": "acc-nomad", "Type": "management"}
        return 403, "ACL token not found"


def nomad_api(pki, api) -> HttpsApi:
    return HttpsApi(api.url, operator_tls(pki, with_client_cert=False))


def test_nomad_bootstrap_with_the_preset_secret(pki, fake_api):
    api = fake_api(client_cert=False)
    nomad = FakeNomad(api, leaderless=2)
    logs: list[str] = []
    assert nomad_acl_bootstrap(nomad_api(pki, api), SECRET, poller(logs=logs)) == "acc-nomad"
    assert nomad.management == SECRET
    assert sum("no Nomad leader" in line for line in logs) == 2, "waits for a leader first"
    assert api.seen("POST", "/v1/acl/bootstrap")[0].body == {"BootstrapSecret": SECRET}


def test_nomad_already_bootstrapped_with_our_secret_is_success(pki, fake_api):
    api = fake_api(client_cert=False)
    FakeNomad(api, bootstrapped_with=SECRET)
    assert nomad_acl_bootstrap(nomad_api(pki, api), SECRET, poller()) == "acc-nomad"


def test_nomad_bootstrapped_by_someone_else_fails_with_the_reset_procedure(pki, fake_api):
    api = fake_api(client_cert=False)
    FakeNomad(api, bootstrapped_with=OTHER)
    with pytest.raises(BootstrapError) as raised:
        nomad_acl_bootstrap(nomad_api(pki, api), SECRET, poller())
    message = str(raised.value)
    assert "reset index (42)" in message and "acl-bootstrap-reset" in message and "pulumi up" in message


def test_nomad_without_leader_times_out(pki, fake_api):
    api = fake_api(client_cert=False)
    FakeNomad(api, leaderless=1000)
    with pytest.raises(DeadlineExceeded, match="Nomad: gave up after 30 s: no Nomad leader yet"):
        nomad_acl_bootstrap(nomad_api(pki, api), SECRET, poller(timeout=30))
    assert not api.seen("POST", "/v1/acl/bootstrap"), "never bootstraps without a leader"


# -- Consul -----------------------------------------------------------------------------------------
MANAGEMENT = "33333333-cccc-4ccc-8ccc-333333333333"


class FakeConsul:
    """Consul's ACL API for policies and tokens, behind a management token."""

    def __init__(self, api, ready_after: int = 0):
        self.ready_after = ready_after
        self.policies: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {MANAGEMENT: {"AccessorID": "acc-mgmt", "Policies": []}}
        api.on("GET", "/v1/acl/token/self", self.self_token)
        api.on("PUT", "/v1/acl/policy", self.create_policy)
        api.on("PUT", "/v1/acl/token", self.create_token)
        self.api = api

    def _authorised(self, seen) -> bool:
        return seen.headers.get("X-Consul-Token") == MANAGEMENT and seen.client_cert

    def self_token(self, seen):
        if self.ready_after:
            self.ready_after -= 1
            return 500, "rpc error: No cluster leader"
        token = self.tokens.get(seen.headers.get("X-Consul-Token"))
        return (200, {**token, "SecretID": seen.headers["X-Consul-Token"]}) if token else (403, "ACL not found")

    def create_policy(self, seen):
        if not self._authorised(seen):
            return 403, "Permission denied"
        policy = {**seen.body, "ID": f"pol-{seen.body['Name']}"}
        self.policies[seen.body["Name"]] = policy
        self.api.on("GET", f"/v1/acl/policy/name/{policy['Name']}", lambda _s: (200, policy))
        self.api.on("PUT", f"/v1/acl/policy/{policy['ID']}", lambda s: self.create_policy(s))
        return 200, policy

    def create_token(self, seen):
        if not self._authorised(seen):
            return 403, "Permission denied"
        accessor = seen.body.get("AccessorID") or f"acc-{seen.body['Description']}"
        self.tokens[seen.body["SecretID"]] = {"AccessorID": accessor, "Policies": seen.body["Policies"]}
        self.api.on("PUT", f"/v1/acl/token/{accessor}", self.create_token)
        return 200, {**seen.body, "AccessorID": accessor}


POLICIES = {"agent": 'node_prefix "" { policy = "write" }', "nomad-agent": 'service_prefix "" { policy = "write" }'}
TOKENS = [PresetToken(SECRET, "agent", ("agent",)), PresetToken(OTHER, "nomad-agent", ("nomad-agent",))]


def consul_api(pki, api, token: str = MANAGEMENT) -> HttpsApi:
    return HttpsApi(api.url, operator_tls(pki), headers={"X-Consul-Token": token})


def test_consul_tokens_get_the_preset_secret_ids(pki, fake_api):
    api = fake_api()
    consul = FakeConsul(api, ready_after=2)
    accessors = consul_preset_tokens(consul_api(pki, api), POLICIES, TOKENS, poller())
    assert accessors == {"agent": "acc-agent", "nomad-agent": "acc-nomad-agent"}
    assert consul.tokens[SECRET]["Policies"] == [{"Name": "agent"}]
    assert consul.tokens[OTHER]["Policies"] == [{"Name": "nomad-agent"}]
    assert consul.policies["agent"]["Rules"] == POLICIES["agent"]


def test_consul_second_run_changes_nothing_and_repairs_drift(pki, fake_api):
    api = fake_api()
    consul = FakeConsul(api)
    consul_preset_tokens(consul_api(pki, api), POLICIES, TOKENS, poller())
    writes = len([r for r in api.requests if r.method == "PUT"])
    assert consul_preset_tokens(consul_api(pki, api), POLICIES, TOKENS, poller()) == {
        "agent": "acc-agent",
        "nomad-agent": "acc-nomad-agent",
    }
    assert len([r for r in api.requests if r.method == "PUT"]) == writes, "an idempotent second run writes nothing"
    consul.policies["agent"]["Rules"] = 'node_prefix "" { policy = "read" }'  # changed by hand
    consul_preset_tokens(consul_api(pki, api), POLICIES, TOKENS, poller())
    assert consul.policies["agent"]["Rules"] == POLICIES["agent"]


def test_consul_with_a_wrong_management_token_never_writes(pki, fake_api):
    api = fake_api()
    FakeConsul(api)
    with pytest.raises(DeadlineExceeded, match="Consul's ACLs not ready \\(403"):
        consul_preset_tokens(consul_api(pki, api, token=OTHER), POLICIES, TOKENS, poller(timeout=20))
    assert not [r for r in api.requests if r.method == "PUT"]


def test_consul_needs_the_client_certificate(pki, fake_api):
    api = fake_api()  # requires a client certificate, like verify_incoming
    FakeConsul(api)
    without_cert = HttpsApi(api.url, operator_tls(pki, with_client_cert=False), headers={"X-Consul-Token": MANAGEMENT})
    with pytest.raises(DeadlineExceeded):
        consul_preset_tokens(without_cert, POLICIES, TOKENS, poller(timeout=10))


# -- Vault ------------------------------------------------------------------------------------------
class FakeVault:
    """One Vault server: init once, then Shamir unseal with 3 of 5 shares (or auto-unseal)."""

    def __init__(self, api, initialized: bool = False, starting: int = 0, auto_unseal: bool = False):
        self.initialized, self.starting, self.auto_unseal = initialized, starting, auto_unseal
        self.sealed, self.given = True, []
        api.on("GET", "/v1/sys/init", self.init_status)
        api.on("PUT", "/v1/sys/init", self.init)
        api.on("GET", "/v1/sys/seal-status", self.seal_status)
        api.on("PUT", "/v1/sys/unseal", self.unseal)

    def init_status(self, _seen):
        if self.starting:
            self.starting -= 1
            return 503, None
        return 200, {"initialized": self.initialized}

    def init(self, seen):
        self.initialized = True
        if "recovery_shares" in seen.body:
            return 200, {
                "root_token": "hvs.root",
                "recovery_keys_base64": [f"r{i}" for i in range(5)],
                "keys_base64": [],
            }
        return 200, {"root_token": "hvs.root", "keys_base64": [f"k{i}" for i in range(seen.body["secret_shares"])]}

    def seal_status(self, _seen):
        if self.auto_unseal and self.starting == 0:
            self.sealed = False
        self.starting = max(0, self.starting - 1)
        return 200, {"sealed": self.sealed, "t": 3, "n": 5, "progress": len(self.given)}

    def unseal(self, seen):
        if not seen.body["key"].startswith("k"):
            return 400, {"errors": ["Unseal failed, invalid key"]}
        self.given.append(seen.body["key"])
        self.sealed = len(self.given) < 3
        return 200, {"sealed": self.sealed, "t": 3, "progress": len(self.given) % 3}


def vault_api(pki, api) -> HttpsApi:
    return HttpsApi(api.url, operator_tls(pki, with_client_cert=False))


def test_vault_init_shamir_then_unseal(pki, fake_api):
    api = fake_api(client_cert=False)
    vault = FakeVault(api, starting=2)
    keys = vault_init(vault_api(pki, api), auto_unseal=False, shares=5, threshold=3, poller=poller())
    assert keys.root_token == "hvs.root" and len(keys.unseal_keys) == 5 and keys.recovery_keys == ()
    assert api.seen("PUT", "/v1/sys/init")[0].body == {"secret_shares": 5, "secret_threshold": 3}
    assert vault_sealed(vault_api(pki, api)) is True
    assert vault_unseal(vault_api(pki, api), keys.unseal_keys, poller()) == "unsealed"
    assert vault.given == ["k0", "k1", "k2"], "exactly the threshold of shares"
    assert vault_sealed(vault_api(pki, api)) is False


def test_vault_init_auto_unseal_returns_recovery_keys(pki, fake_api):
    api = fake_api(client_cert=False)
    FakeVault(api)
    keys = vault_init(vault_api(pki, api), auto_unseal=True, shares=5, threshold=3, poller=poller())
    assert keys.unseal_keys == () and len(keys.recovery_keys) == 5
    assert api.seen("PUT", "/v1/sys/init")[0].body == {"recovery_shares": 5, "recovery_threshold": 3}


def test_vault_already_initialised_fails_with_the_way_out(pki, fake_api):
    api = fake_api(client_cert=False)
    FakeVault(api, initialized=True)
    with pytest.raises(BootstrapError, match="already initialised, but this stack holds no keys"):
        vault_init(vault_api(pki, api), auto_unseal=False, shares=5, threshold=3, poller=poller())
    assert not api.seen("PUT", "/v1/sys/init")


def test_vault_unseal_of_an_unsealed_server_sends_no_key(pki, fake_api):
    api = fake_api(client_cert=False)
    vault = FakeVault(api, initialized=True)
    vault.sealed = False
    vault_unseal(vault_api(pki, api), ("k0", "k1", "k2"), poller())
    assert not api.seen("PUT", "/v1/sys/unseal")


def test_vault_auto_unseal_is_waited_for(pki, fake_api):
    api = fake_api(client_cert=False)
    FakeVault(api, initialized=True, auto_unseal=True, starting=3)
    logs: list[str] = []
    assert vault_unseal(vault_api(pki, api), (), poller(logs=logs)).startswith("unsealed")
    assert any("waiting for auto-unseal" in line for line in logs)
    assert not api.seen("PUT", "/v1/sys/unseal")


def test_vault_wrong_keys_time_out(pki, fake_api):
    api = fake_api(client_cert=False)
    FakeVault(api, initialized=True)
    with pytest.raises(DeadlineExceeded, match="unseal answers 400"):
        vault_unseal(vault_api(pki, api), ("x0", "x1", "x2"), poller(timeout=15))


def test_unreachable_vault_reports_no_seal_status(pki):
    assert vault_sealed(HttpsApi("https://127.0.0.1:1", operator_tls(pki), timeout=1)) is None


def test_every_call_verifies_the_cluster_ca(pki, fake_api):
    impostor = fake_api(cert="impostor", client_cert=False)
    FakeVault(impostor)
    with pytest.raises(ssl.SSLCertVerificationError):
        vault_init(vault_api(pki, impostor), auto_unseal=False, shares=5, threshold=3, poller=poller())


def test_make_unseal_unseals_every_sealed_server(pki, fake_api):
    from scripts.unseal import unseal_all

    first = fake_api(address="127.0.0.1", client_cert=False)
    second = fake_api(address="127.0.0.2", port=first.port, client_cert=False)
    sealed, unsealed = FakeVault(first, initialized=True), FakeVault(second, initialized=True)
    unsealed.sealed = False
    outputs = {
        "vaultUnsealKeys": ["k0", "k1", "k2", "k3", "k4"],
        "caCertPem": (pki / "ca.pem").read_text(),
        "serverAddresses": {"server-0": "127.0.0.1", "server-1": "127.0.0.2"},
    }
    assert unseal_all(outputs, timeout=30, port=first.port) == ["server-0: unsealed", "server-1: already unsealed"]
    assert sealed.given == ["k0", "k1", "k2"] and unsealed.given == []
    with pytest.raises(SystemExit, match="no unseal keys"):
        unseal_all({**outputs, "vaultUnsealKeys": []})
