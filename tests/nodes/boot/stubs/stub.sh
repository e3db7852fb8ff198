#!/usr/bin/env bash
# A recording stub for the boot-script harness (tests/nodes/boot/sandbox.sh): one line per call in
# $STUB_LOG (name and shell-quoted arguments), a curl config given with -K logged too, then the
# scenario's forced failures, then handlers/<name>.sh for the answer. Without a handler: success.
name=$(basename "$0")
{
  printf '%s' "$name"
  printf ' %q' "$@"
  printf '\n'
} >>"$STUB_LOG"
args=("$@")
for i in "${!args[@]}"; do
  if [[ "${args[i]}" == -K ]]; then # "-K -" reads the config from standard input, as curl does
    config=${args[i + 1]}
    [[ "$config" != - ]] || config=/dev/stdin
    { echo "--- curl config ${args[i + 1]}"; cat "$config"; echo "---"; } >>"$STUB_LOG"
  fi
done
# STUB_FAIL_ALWAYS / STUB_FAIL_ONCE: a call whose "name args" contains the text fails (always / once).
if [[ -n "${STUB_FAIL_ALWAYS:-}" && "$name $*" == *"$STUB_FAIL_ALWAYS"* ]]; then
  exit 100
fi
if [[ -n "${STUB_FAIL_ONCE:-}" && "$name $*" == *"$STUB_FAIL_ONCE"* && ! -e "$STUB_STATE/failed-once" ]]; then
  : >"$STUB_STATE/failed-once"
  exit 22
fi
handler="$STUB_HANDLERS/$name.sh"
if [[ -f "$handler" ]]; then
  # shellcheck source=/dev/null
  . "$handler" "$@"
fi
exit 0
