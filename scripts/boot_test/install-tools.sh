#!/usr/bin/env bash
# Installs the boot test's host tools (host-tools.tsv) from Debian's packages when any is missing,
# with sudo unless root. The boot test itself fails, never skips, when one is still missing.
set -euo pipefail

tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/host-tools.tsv"
missing=()
while IFS=$'\t' read -r command package; do
  [[ -z "$command" || "$command" == \#* ]] && continue
  if [[ "$command" == /* ]]; then
    [[ -e "$command" ]] || missing+=("$package")
  else
    command -v "$command" >/dev/null || missing+=("$package")
  fi
done <"$tools"
if ((${#missing[@]} == 0)); then
  exit 0
fi
sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "==> installing the Debian packages ${missing[*]} (the boot test's host tools)" >&2
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
