#!/usr/bin/env bash
# AWS clients: when the autoscaling group terminates this instance (target lifecycle state "Terminated",
# held in Terminating:Wait by the group's hook), stop nomad.service: drain_on_shutdown drains the node.
# The hook then times out with CONTINUE, so no AWS credentials are needed. https://docs.aws.amazon.com/
# autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html
set -Eeuo pipefail
readonly IMDS=http://169.254.169.254/latest INTERVAL=5

log() { printf '%s\n' "$*" >&2; } # to the journal

# Fails (retried) while no state is set yet (404) or metadata is out of reach.
target_state() {
  local token
  token=$(curl -fs --max-time 2 -X PUT "$IMDS/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') &&
    curl -fs --max-time 2 -H "X-aws-ec2-metadata-token: $token" "$IMDS/meta-data/autoscaling/target-lifecycle-state"
}

main() {
  local state seen=""
  log "watching the target lifecycle state every ${INTERVAL}s"
  while :; do
    state=$(target_state) || state="unreadable, retrying"
    [[ "$state" == "$seen" ]] || log "target lifecycle state: $state"
    seen=$state
    if [[ "$state" == Terminated ]]; then
      log "the group terminates this instance: stopping nomad.service, which drains the node first"
      systemctl stop nomad.service
      log "nomad.service stopped"
      return 0
    fi
    sleep "$INTERVAL"
  done
}

main "$@"
