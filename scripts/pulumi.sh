#!/usr/bin/env bash
# Runs one pulumi command against one stack with the project's defaults:
#   - a project-local file backend (.pulumi-state/) when no backend is configured,
#   - on a file backend, a generated passphrase file for the secrets provider unless one is given,
#   - the stack created on first use.
# Usage: scripts/pulumi.sh STACK COMMAND [ARGS...]   e.g. scripts/pulumi.sh dev up
set -euo pipefail

stack="${1:?usage: pulumi.sh STACK COMMAND [ARGS...]}"
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state_dir="$root/.pulumi-state"
export PATH="$HOME/.pulumi/bin:$PATH"
# An operator's shell may hold a stack's env block (`eval "$(pulumi stack output env ...)"`); the
# Consul and Nomad providers would read its CA and certificate files over the program's own.
while read -r variable; do
  unset "$variable"
done < <(compgen -e | grep -E '^(CONSUL|NOMAD|VAULT)_' || true)
export PULUMI_SKIP_UPDATE_CHECK=true

if [[ -z "${PULUMI_BACKEND_URL:-}" ]] && ! pulumi whoami >/dev/null 2>&1; then
  mkdir -p "$state_dir"
  export PULUMI_BACKEND_URL="file://$state_dir"
  echo "==> no Pulumi backend configured: using the project-local state in $state_dir" >&2
fi

backend_url="${PULUMI_BACKEND_URL:-$(pulumi whoami --verbose 2>/dev/null | sed -n 's/^Backend URL: //p')}"
if [[ "$backend_url" == file://* && -z "${PULUMI_CONFIG_PASSPHRASE:-}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
  passphrase_file="$state_dir/passphrase"
  if [[ ! -f "$passphrase_file" ]]; then
    mkdir -p "$state_dir"
    (umask 077 && head -c 32 /dev/urandom | base64 >"$passphrase_file")
    echo "==> generated $passphrase_file: it encrypts this state's secrets; back it up with the state" >&2
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE="$passphrase_file"
fi

cd "$root"
# The dynamic providers (bootstrap, health gates) run in a process of their own and import components/.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
pulumi stack select --create "$stack" >/dev/null
exec pulumi "$@" --stack "$stack"
