#!/usr/bin/env bash
# Installs what `make up` needs on a Debian/Ubuntu host and is a no-op for what is already there:
# the Pulumi CLI at the pinned version (into ~/.pulumi) and, for libvirt stacks, libvirt with QEMU/KVM.
# Usage: scripts/install-host.sh PULUMI_VERSION [libvirt]
set -euo pipefail

pulumi_version="${1:?usage: install-host.sh PULUMI_VERSION [libvirt]}"
want_libvirt="${2:-}"

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
  sudo_cmd=(sudo)
fi

installed_pulumi="$("$HOME/.pulumi/bin/pulumi" version 2>/dev/null || true)"
if [[ "$installed_pulumi" != "v$pulumi_version" ]]; then
  echo "==> installing the Pulumi CLI v$pulumi_version into ~/.pulumi"
  curl -fsSL https://get.pulumi.com | sh -s -- --version "$pulumi_version" --no-edit-path
fi

if [[ "$want_libvirt" == "libvirt" ]]; then
  # xorriso builds the cloud-init ISO of each VM; qemu-utils converts and resizes disk images.
  packages=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils xorriso)
  missing=()
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -q
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
  if [[ "$(id -u)" -ne 0 ]] && ! id -nG | grep -qw libvirt; then
    "${sudo_cmd[@]}" usermod -aG libvirt "$(id -un)"
    echo "==> added $(id -un) to the libvirt group: log out and in again (or run 'newgrp libvirt'), then re-run." >&2
    exit 1
  fi
fi
