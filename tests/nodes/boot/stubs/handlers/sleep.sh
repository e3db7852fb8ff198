# shellcheck shell=bash
# sleep: returns at once. With STUB_SLEEPS=N the call after the Nth fails, which ends a polling loop
# under `set -e` (a script that would otherwise poll for ever stops, and its calls can be counted).
if [[ -n "${STUB_SLEEPS:-}" ]]; then
  sleeps=$(($(cat "$STUB_STATE/sleeps" 2>/dev/null || echo 0) + 1))
  echo "$sleeps" >"$STUB_STATE/sleeps"
  ((sleeps <= STUB_SLEEPS)) || exit 1
fi
