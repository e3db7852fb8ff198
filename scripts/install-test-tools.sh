#!/usr/bin/env bash
# Installs the validators the tests run that are not on PyPI: `cloud-init schema` (Debian package
# cloud-init). A no-op when present. The tests fail, never skip, when a validator is missing.
set -euo pipefail

if command -v cloud-init >/dev/null; then
  exit 0
fi
sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
echo "==> installing the Debian package cloud-init (its 'cloud-init schema' validates rendered user-data)" >&2
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends cloud-init
