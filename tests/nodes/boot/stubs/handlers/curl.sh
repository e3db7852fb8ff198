# shellcheck shell=bash
# curl: the repository's signing key (<url>/gpg), IMDSv2 (token, role, credentials, services/domain), SSM GetParameters (each name's value is
# "value of <name>") and the CNI release files, as the bootstrap asks for them; the autoscaling target
# lifecycle state as hashistack-asg-drain polls it: the next word of $STUB_LIFECYCLE_STATES per call
# (the last one again once they run out), "404" failing as curl -f does on a missing item.
url="" out="" remote="" data="" write_out=""
while (($#)); do
  case "$1" in
    -o) out=$2 && shift ;;
    -w) write_out=$2 && shift ;;
    --data) data=$2 && shift ;;
    -H | -X | -K | --aws-sigv4 | --max-time | --connect-timeout) shift ;;
    http*) url=$1 ;;
    -*O) remote=1 ;;
  esac
  shift
done
case "$url" in
  */gpg) echo "-----BEGIN PGP PUBLIC KEY BLOCK-----" >"$out" ;;
  */latest/api/token) printf 'imds-session-token' ;;
  */iam/security-credentials/) printf 'hashistack-client' ;;
  */iam/security-credentials/hashistack-client)
    printf '{"AccessKeyId":"AKIDEXAMPLE","SecretAccessKey":"secret-access-key","Token":"session-token"}'
    ;;
  */meta-data/services/domain) printf 'amazonaws.com' ;;
  https://ssm.*)
    # $STUB_SSM_DENIED: SSM refuses as it does, with its JSON error body and an HTTP 400.
    if [[ -n "${STUB_SSM_DENIED:-}" ]]; then
      printf '{"__type":"AccessDeniedException","Message":"%s"}' "$STUB_SSM_DENIED" >"$out"
      [[ -z "$write_out" ]] || printf '400'
    else
      jq -c '{Parameters: [.Names[] | {Name: ., Value: ("value of " + .)}], InvalidParameters: []}' <<<"$data" >"${out:-/dev/stdout}"
      [[ -z "$write_out" ]] || printf '200'
    fi
    ;;
  */meta-data/autoscaling/target-lifecycle-state)
    read -ra states <<<"${STUB_LIFECYCLE_STATES:?}"
    calls=$(($(cat "$STUB_STATE/lifecycle-calls" 2>/dev/null || echo 0) + 1))
    echo "$calls" >"$STUB_STATE/lifecycle-calls"
    state=${states[calls <= ${#states[@]} ? calls - 1 : ${#states[@]} - 1]}
    [[ "$state" != 404 ]] || exit 22
    printf '%s' "$state"
    ;;
  *.tgz | *.sha256) [[ -z "$remote" ]] || : >"${url##*/}" ;;
esac
