"""VaultInit's provider (components/rollout/vault_init.py) against a server that answers as the pinned
Vault does (tests/fake_cluster.py, answers and sources in tests/upstream.py): what it asks for, what it
keeps, and that server-0 is unsealed when it is done. Its place in the chain: tests/rollout/test_server_chain.py."""

from __future__ import annotations

import time

import pytest
from fake_cluster import VAULT_ROOT, FakeCluster
from fake_https import operator_tls

from components.dynamic.http_api import DeadlineExceeded
from components.rollout.vault_init import VAULT_KEY_SHARES, VAULT_KEY_THRESHOLD, _VaultInitProvider


def _props(cluster: FakeCluster, pki, auto_unseal: bool) -> dict:
    return {
        "address": f"https://{cluster.address('server-0')}:{cluster.ports[2]}",
        "ca_pem": operator_tls(pki).ca_pem,
        "auto_unseal": auto_unseal,
        "shares": VAULT_KEY_SHARES,
        "threshold": VAULT_KEY_THRESHOLD,
        "machine": "m-0",
    }


@pytest.mark.parametrize("seal_type", ["shamir", "awskms"])
def test_vault_is_initialised_once_with_the_keys_of_its_seal_and_server_0_unsealed(pki, fake_api, seal_type):
    cluster = FakeCluster(fake_api, seal_type=seal_type)
    cluster.boot(*cluster.names)
    auto_unseal = seal_type != "shamir"
    props = _props(cluster, pki, auto_unseal)
    created = _VaultInitProvider(timeout=5, interval=0.01).create(props)
    assert created.id == "vault-init"
    # Five shares, three to unseal (Shamir) or to authorise recovery operations (awskms).
    assert (cluster.vault.shares, cluster.vault.threshold) == (5, 3)
    keys = created.outs["recovery_keys" if auto_unseal else "unseal_keys"]
    assert len(keys) == 5 and created.outs["unseal_keys" if auto_unseal else "recovery_keys"] == []
    assert created.outs["root_token"] == VAULT_ROOT
    assert {k: created.outs[k] for k in props} == props, "the inputs are kept as they were"
    assert "server-0" in cluster.vault.unsealed
    if not auto_unseal:
        assert cluster.vault.keys == created.outs["unseal_keys"], "the keys the server issued, as issued"


def test_vault_init_never_changes_after_its_creation():
    provider = _VaultInitProvider()
    assert provider.diff("vault-init", {"address": "https://a:8200"}, {"address": "https://b:8200"}).changes is False


def test_a_server_0_that_never_answers_stops_the_initialisation_at_the_deadline(pki, fake_api):
    cluster = FakeCluster(fake_api)
    cluster.boot(*cluster.names)
    cluster.set_running("server-0", running=False)
    provider = _VaultInitProvider(timeout=0.3, interval=0.01)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"Vault: gave up after .*no answer \(https://127\.0\.0\.1:"):
        provider.create(_props(cluster, pki, auto_unseal=False))
    # It asked again and again at the interval, and gave up at the deadline, not before nor long after.
    assert 0.3 <= time.monotonic() - started < 5
    assert not cluster.vault.initialized
