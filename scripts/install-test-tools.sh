#!/usr/bin/env bash
# Installs the validators and tools the tests run that are not on PyPI, from Debian's packages:
# `cloud-init schema` (cloud-init) for rendered user-data, bats-core (bats) and jq for the boot-script
# harness (tests/nodes/boot), nft and ip for the node's firewall rules, loaded in a private network namespace;
# xsltproc, which the libvirt provider runs on our stylesheets (libvirt/*.xsl), and xmllint with
# libvirt's RelaxNG schemas (shipped in libvirt0, the library alone) to validate what they produce;
# apt-ftparchive (apt-utils), gpg and gpgv, which build and verify the boot test's stand-in repository;
# docker-registry, umoci and skopeo, its stand-in Docker Hub and the puller the bake runs.
# A no-op when all are present. The tests fail, never skip, when one is missing.
set -euo pipefail

declare -A package_of=([cloud-init]=cloud-init [bats]=bats [jq]=jq [nft]=nftables [ip]=iproute2 [unshare]=util-linux [useradd]=passwd [xsltproc]=xsltproc [xmllint]=libxml2-utils [apt-ftparchive]=apt-utils [gpg]=gpg [gpgv]=gpgv [docker-registry]=docker-registry [umoci]=umoci [skopeo]=skopeo)
# Files the tests read that no command stands for.
declare -A package_of_file=([/usr/share/libvirt/schemas/domain.rng]=libvirt0)
missing=()
for command in "${!package_of[@]}"; do
  command -v "$command" >/dev/null || missing+=("${package_of[$command]}")
done
for file in "${!package_of_file[@]}"; do
  [[ -e "$file" ]] || missing+=("${package_of_file[$file]}")
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
