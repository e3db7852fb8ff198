#!/usr/bin/env bats
# cloudinit/hashistack-asg-drain.sh, the AWS clients' watch on the autoscaling group, run against the
# recording stubs (stubs/stub.sh): curl answers the target lifecycle state from $STUB_LIFECYCLE_STATES,
# systemctl and sleep return at once. The states and the IMDSv2 calls are those of
# https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html
# (InService, Standby, Detached, Terminated, Warmed:*; a 404 until the group has set one). That a stop
# drains the node is Nomad's (drain_on_shutdown, client/drain.go@v2.0.5): tests/nodes/test_node_config.py.

setup() {
  export STUB_LOG="$BATS_TEST_TMPDIR/calls.log" STUB_STATE="$BATS_TEST_TMPDIR/state"
  export STUB_HANDLERS="$BATS_TEST_DIRNAME/stubs/handlers"
  mkdir -p "$STUB_STATE" "$BATS_TEST_TMPDIR/bin"
  : >"$STUB_LOG"
  for command in curl sleep systemctl; do
    ln -s "$BATS_TEST_DIRNAME/stubs/stub.sh" "$BATS_TEST_TMPDIR/bin/$command"
  done
}

# Runs the script as the unit does, under a timeout that only a bug would reach.
watch() {
  run env PATH="$BATS_TEST_TMPDIR/bin:$PATH" timeout 30 bash "$BATS_TEST_DIRNAME/../../../cloudinit/hashistack-asg-drain.sh"
}

count() { grep -c -- "$1" "$STUB_LOG" || true; }

@test "InService, then Terminated: nomad.service is stopped once, and the watch ends with success" {
  STUB_LIFECYCLE_STATES="InService InService Terminated" watch
  [ "$status" -eq 0 ] || { echo "$output"; false; }
  [ "$(grep '^systemctl' "$STUB_LOG")" = "systemctl stop nomad.service" ]
  [ "$(count '/meta-data/autoscaling/target-lifecycle-state$')" -eq 3 ]
  # IMDSv2: a session token (PUT) before each read, sent with it; the hop limit of 1 suffices on the host.
  [ "$(count '^curl -fs --max-time 2 -X PUT http://169.254.169.254/latest/api/token -H X-aws-ec2-metadata-token-ttl-seconds:\\ 60$')" -eq 3 ]
  [ "$(count 'X-aws-ec2-metadata-token:\\ imds-session-token http://169.254.169.254/latest/meta-data/autoscaling/target-lifecycle-state$')" -eq 3 ]
  [ "$(count '^sleep 5$')" -eq 2 ]
  # A state is logged when it changes, not on every poll.
  [ "$(grep -c 'target lifecycle state: InService' <<<"$output")" -eq 1 ]
  [[ "$output" == *"target lifecycle state: Terminated"*"stopping nomad.service"*"nomad.service stopped" ]]
}

@test "metadata errors (no token, a 404 before the group sets a state) are retried, never fatal" {
  STUB_FAIL_ONCE="latest/api/token" STUB_LIFECYCLE_STATES="404 404 InService Terminated" watch
  [ "$status" -eq 0 ] || { echo "$output"; false; }
  [ "$(count '^systemctl stop nomad.service$')" -eq 1 ]
  [ "$(count '/meta-data/autoscaling/target-lifecycle-state$')" -eq 4 ]
  [ "$(grep -c 'unreadable, retrying' <<<"$output")" -eq 1 ]
}

@test "states other than Terminated (Standby, Detached, a warm pool's) leave Nomad running" {
  STUB_SLEEPS=5 STUB_LIFECYCLE_STATES="InService Standby InService Detached Warmed:Terminated" watch
  [ "$(count '/meta-data/autoscaling/target-lifecycle-state$')" -eq 6 ]
  [ "$(count '^systemctl')" -eq 0 ]
  [ "$status" -eq 1 ] # the stub's sixth sleep failed: the watch itself never ends
}

@test "a stop that fails ends the watch with failure, so systemd runs it again (Restart=on-failure)" {
  STUB_FAIL_ALWAYS="systemctl stop" STUB_LIFECYCLE_STATES="Terminated" watch
  [ "$status" -eq 100 ]
  [ "$(count '^systemctl stop nomad.service$')" -eq 1 ]
}
