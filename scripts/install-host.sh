#!/usr/bin/env bash
# Installs what `make up` needs on a Debian/Ubuntu host and is a no-op for what is already there:
# the Pulumi CLI at the pinned version (into ~/.pulumi) and, for libvirt stacks, the packages listed in
# scripts/host-requirements.tsv (what the libvirt provider and libvirtd really execute; `make check-host`
# reads the same file). `make check-host` then says whether the host can run the stack.
# Usage: scripts/install-host.sh PULUMI_VERSION [libvirt]
set -euo pipefail

pulumi_version="${1:?usage: install-host.sh PULUMI_VERSION [libvirt]}"
want_libvirt="${2:-}"
requirements="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/host-requirements.tsv"

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
  sudo_cmd=(sudo)
fi

# Debian packages given as arguments that are not installed yet, one per line.
missing_packages() {
  local package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
  done
}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "==> this host has no apt-get: install the equivalents of these Debian packages yourself: $*" >&2
    exit 1
  fi
  echo "==> installing $*"
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# `make` creates the venv with `python3 -m venv`, which needs ensurepip (python3-venv on Debian/Ubuntu),
# and the Pulumi CLI comes through curl; neither is on every stock install.
bootstrap=()
python3 -c 'import ensurepip' 2>/dev/null || bootstrap+=(python3-venv)
command -v curl >/dev/null || bootstrap+=(curl ca-certificates)
if ((${#bootstrap[@]})); then
  apt_install "${bootstrap[@]}"
fi

installed_pulumi="$(PULUMI_SKIP_UPDATE_CHECK=true "$HOME/.pulumi/bin/pulumi" version 2>/dev/null || true)"
if [[ "$installed_pulumi" != "v$pulumi_version" ]]; then
  echo "==> installing the Pulumi CLI v$pulumi_version into ~/.pulumi"
  curl -fsSL https://get.pulumi.com | sh -s -- --version "$pulumi_version" --no-edit-path
fi

if [[ "$want_libvirt" == "libvirt" ]]; then
  # Column 2 of the shared list, each package once (several executables may share one).
  mapfile -t packages < <(grep -v '^#' "$requirements" | cut -f2 | sed '/^$/d' | sort -u)
  mapfile -t missing < <(missing_packages "${packages[@]}")
  if ((${#missing[@]})); then
    apt_install "${missing[@]}"
  fi
  # qemu:///system's socket is for root and the group libvirt (libvirt-daemon-system creates it). A
  # group added now counts only in sessions started after it, so stop here rather than fail later.
  if [[ "$(id -u)" -ne 0 ]] && ! id -nG | tr ' ' '\n' | grep -qx libvirt; then
    user="$(id -un)"
    if ! getent group libvirt | cut -d: -f4 | tr ',' '\n' | grep -qx "$user"; then
      "${sudo_cmd[@]}" usermod -aG libvirt "$user"
      echo "==> added you ($user) to group libvirt; log out and back in (or \`newgrp libvirt\`), then run make up again" >&2
    else
      echo "==> you ($user) are in group libvirt, but this session started before that; log out and back in (or \`newgrp libvirt\`), then run make up again" >&2
    fi
    exit 1
  fi
fi
