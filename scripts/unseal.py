"""`make unseal STACK=dev`: unseal every Vault server of a Shamir-sealed stack, e.g. after the host
rebooted the VMs. Reads the unseal keys, the servers' addresses and the CA from the stack's outputs
(`pulumi stack output --show-secrets`); talks to each server over TLS verified by the cluster CA.
`make up` does the same as part of its run; this is the quick way without a full `up`.
"""

from __future__ import annotations

import argparse
import sys

from components.dynamic.agent_api import vault_sealed, vault_unseal
from components.dynamic.http_api import DeadlineExceeded, HttpsApi, Poller, TlsMaterial
from scripts.stack_files import stack_outputs


def unseal_all(outputs: dict, timeout: float = 300, port: int = 8200, interval: float = 5.0) -> list[str]:
    keys = tuple(outputs.get("vaultUnsealKeys") or ())
    if not keys:
        raise SystemExit("this stack has no unseal keys: its Vault unseals itself (awskms) or is not initialised")
    tls = TlsMaterial(outputs["caCertPem"])
    lines = []
    for server, address in outputs["serverAddresses"].items():
        vault = HttpsApi(f"https://{address}:{port}", tls)
        if vault_sealed(vault) is False:
            lines.append(f"{server}: already unsealed")
            continue
        try:
            lines.append(f"{server}: {vault_unseal(vault, keys, Poller(timeout, interval))}")
        except DeadlineExceeded as error:
            lines.append(f"{server}: FAILED, {error}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    lines = unseal_all(stack_outputs(args.stack))
    print("\n".join(lines))
    return 1 if any("FAILED" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
