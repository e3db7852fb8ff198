#!/usr/bin/env bash
# Installs the validators and tools the tests run that are not on PyPI, from Debian's packages:
# `cloud-init schema` (cloud-init) for rendered user-data, bats-core (bats) and jq for the boot-script
# harness (tests/boot), nft and ip for the node's firewall rules, loaded in a private network namespace. A no-op when all are present. The tests fail, never skip, when one is missing.
set -euo pipefail

declare -A package_of=([cloud-init]=cloud-init [bats]=bats [jq]=jq [nft]=nftables [ip]=iproute2 [unshare]=util-linux [useradd]=passwd)
missing=()
for command in "${!package_of[@]}"; do
  command -v "$command" >/dev/null || missing+=("${package_of[$command]}")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
echo "==> installing the Debian packages ${missing[*]} (test validators and the boot-script harness)" >&2
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
