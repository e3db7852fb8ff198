#!/usr/bin/env bats
# cloudinit/hashistack-bootstrap.sh run as on a first boot, in a sandbox (sandbox.sh) with recording
# stubs. $NODES holds each test node's write_files as JSON, rendered from its real user-data by
# tests/nodes/test_boot_script.py, which runs this file. A stub cannot show systemd's job ordering: the
# rendered units are checked in tests/nodes/test_node_config.py and under real systemd by the boot test.

# `run !` for every negative assertion: a bare `! command` fails a test only on its last line (bash's
# errexit ignores negated commands; shellcheck SC2314), and `run !` needs bats-core 1.5.0.
bats_require_minimum_version 1.5.0

setup() {
  SANDBOX="$BATS_TEST_TMPDIR/sandbox"
  mkdir -p "$SANDBOX"
  # What a baked image holds (tests/nodes/test_boot_script.py: the pinned versions, the release's packages).
  RELEASE_PACKAGES="ca-certificates=any curl=any gnupg=any jq=any docker.io=any nftables=any openjdk-21-jre-headless=any"
  PINNED="consul=2.0.4-1 nomad=2.0.7-1 vault=2.1.1-1 consul-cni=2.0.3-1"
  # The bake holds them (apt-mark hold), as every boot that installs them does.
  export STUB_HELD="consul nomad vault consul-cni"
}

# bake_cni VERSION: the CNI manifest a baked image holds (install_cni_plugins writes it).
bake_cni() {
  mkdir -p "$SANDBOX/opt-seed/cni/bin"
  printf '%s\n%s  bridge\n' "$1" "$(printf 'x' | sha256sum | cut -d' ' -f1)" >"$SANDBOX/opt-seed/cni/bin/.hashistack-cni-plugins"
}

# A keystore cut short, as an interrupted configure leaves it.
cut_keystore() {
  mkdir -p "$SANDBOX/upper_etc/ssl/certs/java"
  head -c 5000 /dev/zero >"$SANDBOX/upper_etc/ssl/certs/java/cacerts"
}

boot() {
  local unshare=(unshare --mount --propagation private)
  [[ $EUID -eq 0 ]] || unshare+=(--map-root-user)
  "${unshare[@]}" "$BATS_TEST_DIRNAME/sandbox.sh" "$SANDBOX" "$NODES/$1.json"
  STATUS=$(cat "$SANDBOX/status")
}

mode_of() { awk -v path="$1" '$3 == path { print $1, $2 }' "$SANDBOX/modes.txt"; }
last_line() { tail -n 1 "$1"; }

@test "a server installs the pinned agents, hands each its files and starts them all without waiting" {
  boot server-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -Fq "apt-get install -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef --allow-change-held-packages consul=2.0.4-1 nomad=2.0.7-1 vault=2.1.1-1" "$SANDBOX/calls.log"
  grep -Fxq "systemctl enable --no-reload consul.service nomad.service vault.service" "$SANDBOX/calls.log"
  # One reload, after the links are made: it reads them with the unit files cloud-init wrote.
  [ "$(grep -c "^systemctl daemon-reload$" "$SANDBOX/calls.log")" -eq 1 ]
  [ "$(grep -n "^systemctl daemon-reload$" "$SANDBOX/calls.log" | cut -d: -f1)" -gt "$(grep -n "^systemctl enable" "$SANDBOX/calls.log" | tail -n 1 | cut -d: -f1)" ]
  run ! grep -q "^systemctl enable [^-]" "$SANDBOX/calls.log"
  run ! grep -q "cni-plugins\|consul-cni" "$SANDBOX/calls.log" # a client's only
  grep -Fxq "systemctl start --no-block consul.service nomad.service vault.service" "$SANDBOX/calls.log"
  run ! grep -Eq "systemctl (enable --now|start) [^-]" "$SANDBOX/calls.log"
  [ "$(mode_of /etc/hashistack/tls/node-key.pem)" = "600 root:root" ]
  [ "$(mode_of /etc/consul.d/tls/agent-key.pem)" = "640 root:consul" ]
  [ "$(mode_of /etc/consul.d/secrets.hcl)" = "640 root:consul" ]
  [ "$(mode_of /etc/nomad.d/tls/agent-key.pem)" = "640 root:root" ]
  [ "$(mode_of /etc/vault.d/tls/vault-key.pem)" = "640 root:vault" ]
  [ "$(mode_of /etc/vault.d/vault.env)" = "640 root:vault" ]
  [ "$(mode_of /opt/consul)" = "750 consul:consul" ]
  [ "$(mode_of /opt/nomad/data)" = "700 root:root" ]
  # Every program's lookups go through resolved's stub (Debian's images point at the uplink servers).
  [ "$(readlink "$SANDBOX/upper_etc/resolv.conf")" = "../run/systemd/resolve/stub-resolv.conf" ]
  [ "$(mode_of /opt/vault/data)" = "750 vault:vault" ]
  [ "$(last_line "$SANDBOX/console")" = "hashistack-bootstrap: done" ]
  grep -Fq "consul.service: enabled, activating" "$SANDBOX/output"
}

@test "a client starts its task firewall, Consul and Nomad, all enabled, none waited for; containers in docker.slice" {
  boot client-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -Fxq "systemctl enable --no-reload hashistack-task-firewall.service docker.service consul.service nomad.service" "$SANDBOX/calls.log"
  # Docker, installed (so running) before its daemon.json, restarts to read it; then starts with the agents.
  grep -Fxq "systemctl try-restart docker.service" "$SANDBOX/calls.log"
  grep -Fxq "systemctl start --no-block hashistack-task-firewall.service docker.service consul.service nomad.service" "$SANDBOX/calls.log"
  run ! grep -q vault "$SANDBOX/calls.log"
  run ! grep -q hashistack-asg-drain "$SANDBOX/calls.log" "$SANDBOX/modes.txt" # an AWS client's only
  [ "$(jq -c . "$SANDBOX/upper_etc/docker/daemon.json")" = '{"dns":["10.42.0.20"],"cgroup-parent":"docker.slice"}' ]
  [ "$(mode_of /etc/hashistack/tasks.nft)" = "644 root:root" ]
  [ "$(mode_of /etc/hashistack/public/ca.pem)" = "644 root:root" ]
  [ "$(last_line "$SANDBOX/console")" = "hashistack-bootstrap: done" ]
  grep -Fxq "curl --connect-timeout 10 --max-time 300 -fsSLO https://github.com/containernetworking/plugins/releases/download/v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz" "$SANDBOX/calls.log"
}

@test "a client takes the CNI plugins from cniPluginsUrl, and every download is bounded in time" {
  STUB_KEY_FINGERPRINT=0123456789ABCDEF0123456789ABCDEF01234567 boot client-mirror
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -Fxq "curl --connect-timeout 10 --max-time 300 -fsSLO https://nexus.example.com/repository/cni-plugins/v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz" "$SANDBOX/calls.log"
  grep -Fxq "curl --connect-timeout 10 --max-time 300 -fsSLO https://nexus.example.com/repository/cni-plugins/v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz.sha256" "$SANDBOX/calls.log"
  run ! grep -q github.com "$SANDBOX/calls.log"
  # A source that drops packets would otherwise hold each attempt for minutes (curl has no overall timeout).
  [ "$(grep -c '^curl ' "$SANDBOX/calls.log")" -ge 3 ]
  run ! bash -c "grep '^curl ' '$SANDBOX/calls.log' | grep -qv '^curl --connect-timeout 10 --max-time 300 '"
}

@test "an AWS client (SSM) also enables and starts its autoscaling watch, hashistack-asg-drain" {
  boot client-ssm
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -Fxq "systemctl enable --no-reload hashistack-task-firewall.service docker.service consul.service nomad.service hashistack-asg-drain.service" "$SANDBOX/calls.log"
  grep -Fxq "systemctl start --no-block hashistack-task-firewall.service docker.service consul.service nomad.service hashistack-asg-drain.service" "$SANDBOX/calls.log"
  [ "$(mode_of /usr/local/sbin/hashistack-asg-drain)" = "755 root:root" ]
  [ "$(mode_of /etc/systemd/system/hashistack-asg-drain.service)" = "644 root:root" ]
  [ "$(mode_of /etc/systemd/system/nomad.service.d/drain.conf)" = "644 root:root" ]
  [ "$(mode_of /usr/local/sbin/hashistack-bootstrap)" = "700 root:root" ]
  run ! grep -q "^systemctl stop" "$SANDBOX/calls.log"
}

@test "an SSM fetch whose first attempt fails signs the second, and the secrets land root-only" {
  STUB_FAIL_ONCE="https://ssm." boot client-ssm
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  [ "$(grep -c '^curl .*https://ssm\.' "$SANDBOX/calls.log")" -eq 2 ]
  [ "$(grep -c '^user = "AKIDEXAMPLE:secret-access-key"$' "$SANDBOX/calls.log")" -eq 2 ]
  [ "$(grep -c '^header = "x-amz-security-token: session-token"$' "$SANDBOX/calls.log")" -eq 2 ]
  [ "$(cat "$SANDBOX/upper_etc/consul.d/secrets.hcl")" = "value of /hashistack/aws/clients/consul-secrets" ]
  [ "$(mode_of /etc/hashistack/tls/node-key.pem)" = "600 root:root" ]
  run ! grep -q "secret-access-key\|session-token" "$SANDBOX/output" "$SANDBOX/upper_var_log/hashistack-bootstrap.log"
  run ! grep -q "retrying.*\(imds\|session\|hashistack-client\)" "$SANDBOX/output"
}

@test "SSM's own refusal is in the log, and the endpoint is the partition's" {
  STUB_SSM_DENIED="not authorized to perform kms:Decrypt" boot client-ssm
  [ "$STATUS" -ne 0 ]
  grep -q 'SSM answered HTTP 400: {"__type":"AccessDeniedException","Message":"not authorized to perform kms:Decrypt"}' "$SANDBOX/output"
  grep -q '^curl .*https://ssm\.eu-central-1\.amazonaws\.com/$' "$SANDBOX/calls.log"
  [[ "$(last_line "$SANDBOX/console")" == "hashistack-bootstrap: FAILED while fetching secrets from SSM Parameter Store"* ]]
}

@test "a retried metadata call leaves its log line out of the value it returns" {
  STUB_FAIL_ONCE="latest/api/token" boot client-ssm
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -q "retrying in 5s: curl --connect-timeout 10 --max-time 300 -fsS -X PUT http://169.254.169.254/latest/api/token" "$SANDBOX/output"
  grep -Fxq "curl --connect-timeout 10 --max-time 300 -fsS -H X-aws-ec2-metadata-token:\ imds-session-token http://169.254.169.254/latest/meta-data/iam/security-credentials/" "$SANDBOX/calls.log"
}

@test "a failed step ends with one FAILED line naming the step, the command and the way out" {
  STUB_INSTALLED="$RELEASE_PACKAGES" STUB_FAIL_ALWAYS="apt-get update" boot server-inline
  [ "$STATUS" -ne 0 ]
  expected="hashistack-bootstrap: FAILED while adding the HashiCorp apt repository https://apt.releases.hashicorp.com: \`apt-get update -q\` failed 10 times. Check that the node reaches"
  [[ "$(last_line "$SANDBOX/console")" == "$expected"* ]]
  [[ "$(last_line "$SANDBOX/console")" == *"re-run: sudo "*"(full log: /var/log/hashistack-bootstrap.log)" ]]
  [ "$(grep -c FAILED "$SANDBOX/output")" -eq 1 ]
  [[ "$(last_line "$SANDBOX/output")" == *"FAILED while adding the HashiCorp apt repository https://"* ]]
  run ! grep -q "^systemctl" "$SANDBOX/calls.log"
}

@test "an unforeseen failure names the command that failed, once" {
  STUB_FAIL_ALWAYS="systemctl daemon-reload" boot client-ssm
  [ "$STATUS" -eq 100 ]
  expected="hashistack-bootstrap: FAILED while starting hashistack-task-firewall.service docker.service consul.service nomad.service hashistack-asg-drain.service: \`systemctl daemon-reload\` exited 100"
  [[ "$(last_line "$SANDBOX/console")" == "$expected"* ]]
  [ "$(grep -c FAILED "$SANDBOX/console")" -eq 1 ]
}

@test "a signing key that is not HashiCorp's stops the boot with the reason" {
  STUB_KEY_FINGERPRINT=0000000000000000000000000000000000000000 boot server-inline
  [ "$STATUS" -eq 1 ]
  [[ "$(last_line "$SANDBOX/console")" == "hashistack-bootstrap: FAILED while adding the HashiCorp apt repository https://apt.releases.hashicorp.com: HashiCorp signing key mismatch: got '0000000000000000000000000000000000000000'"*"Do not trust this repository"* ]]
  run ! grep -q "^apt-get install .*consul=" "$SANDBOX/calls.log"
}

@test "a package mirror of your choice: its key checked against the configured fingerprint, its URL in apt" {
  STUB_KEY_FINGERPRINT=0123456789ABCDEF0123456789ABCDEF01234567 boot server-mirror
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -q "^curl --connect-timeout 10 --max-time 300 -fsSL https://nexus.example.com/repository/hashicorp/gpg -o " "$SANDBOX/calls.log"
  grep -q " https://nexus.example.com/repository/hashicorp $(. /etc/os-release && echo "$VERSION_CODENAME") main$" \
    "$SANDBOX/upper_etc/apt/sources.list.d/hashicorp.list"
  run ! grep -q "apt.releases.hashicorp.com" "$SANDBOX/calls.log"
}

@test "a stock image: the release's packages first, from its archive, then the pinned agents" {
  boot client-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -q "not in the image: ca-certificates" "$SANDBOX/output"
  release=$(grep -n "^apt-get install -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef ca-certificates curl gnupg jq docker.io nftables openjdk-21-jre-headless$" "$SANDBOX/calls.log" | cut -d: -f1)
  agents=$(grep -n "^apt-get install .* consul=2.0.4-1 nomad=2.0.7-1 consul-cni=2.0.3-1$" "$SANDBOX/calls.log" | cut -d: -f1)
  # One assertion a line: in an && list only the last command can fail the test (bash's errexit).
  [ -n "$release" ]
  [ -n "$agents" ]
  [ "$release" -lt "$agents" ]
  # The CNI manifest records the version extracted, for the next run's check.
  grep -q "^/opt/cni/bin/.hashistack-cni-plugins$" "$SANDBOX/opt.txt"
}

@test "a keystore left by ca-certificates-java's interrupted configure is rebuilt by the next attempt" {
  STUB_UNCONFIGURED="ca-certificates-java=iF" STUB_APT_DIES_IN_JAVA=1 boot client-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  # The first attempt died in Java; the second found the package unconfigured and its keystore cut short.
  grep -A1 "^==> .* retrying in 5s: apt_install .* openjdk-21-jre-headless$" "$SANDBOX/output" |
    grep -q "ca-certificates-java is not configured (dpkg: iF): removing /etc/ssl/certs/java/cacerts for its configure to rebuild"
  # Gone from the node (an overlay whiteout, or no file), and the package's marker asks its postinst for a fresh store.
  [ "$(stat -c %F "$SANDBOX/upper_etc/ssl/certs/java/cacerts" 2>/dev/null)" != "regular file" ]
  [ -e "$SANDBOX/upper_var_lib/ca-certificates-java/fresh" ]
  [ ! -s "$SANDBOX/upper_var_lib/ca-certificates-java/fresh" ]
  [ "$(grep -c "^apt-get install .* openjdk-21-jre-headless$" "$SANDBOX/calls.log")" -eq 2 ]
  # apt configures what is unfinished before any install: the agents' install repairs first too.
  grep -q "^apt-get install .* consul=2.0.4-1 nomad=2.0.7-1 consul-cni=2.0.3-1$" "$SANDBOX/calls.log"
}

@test "only a ca-certificates-java that dpkg has yet to configure loses its keystore" {
  cut_keystore
  STUB_INSTALLED="ca-certificates-java=20230710~deb12u1" boot client-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  [ "$(stat -c %s "$SANDBOX/upper_etc/ssl/certs/java/cacerts")" -eq 5000 ]
  run ! grep -q "ca-certificates-java is not configured" "$SANDBOX/output"
  for state in iU iW it; do
    rm -rf "${SANDBOX:?}"/* && cut_keystore
    STUB_UNCONFIGURED="ca-certificates-java=$state" boot client-inline
    grep -q "ca-certificates-java is not configured (dpkg: $state)" "$SANDBOX/output"
  done
  # A re-run with the release's packages there: the agents' install repairs first.
  rm -rf "${SANDBOX:?}"/* && cut_keystore
  STUB_INSTALLED="$RELEASE_PACKAGES" STUB_UNCONFIGURED="ca-certificates-java=iF" boot server-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  [ "$(stat -c %F "$SANDBOX/upper_etc/ssl/certs/java/cacerts" 2>/dev/null)" != "regular file" ]
  for state in rc iH; do # removed (its config files left), half-installed: nothing to configure from
    rm -rf "${SANDBOX:?}"/* && cut_keystore
    STUB_UNCONFIGURED="ca-certificates-java=$state" boot client-inline
    [ "$(stat -c %s "$SANDBOX/upper_etc/ssl/certs/java/cacerts")" -eq 5000 ]
  done
}

@test "a baked image with the pinned versions: nothing downloaded or installed, straight to configuration" {
  bake_cni 1.7.1
  STUB_INSTALLED="$RELEASE_PACKAGES $PINNED" boot client-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -q "the image holds the pinned versions: skipping download and install" "$SANDBOX/output"
  run ! grep -q "^apt-get\|^curl\|^apt-mark\|^gpg" "$SANDBOX/calls.log"
  # Checked, not assumed: the plugins' files against the manifest's checksums.
  grep -Fxq "sha256sum --quiet --strict -c -" "$SANDBOX/calls.log"
  # Docker is disabled in the image (servers never run it); a client enables it.
  grep -Fxq "systemctl enable --no-reload hashistack-task-firewall.service docker.service consul.service nomad.service" "$SANDBOX/calls.log"
  grep -Fxq "systemctl enable --no-reload docker.socket containerd.service" "$SANDBOX/calls.log"
  grep -Fxq "systemctl start --no-block hashistack-task-firewall.service docker.service consul.service nomad.service" "$SANDBOX/calls.log"
  [ "$(last_line "$SANDBOX/console")" = "hashistack-bootstrap: done" ]
}

@test "an image holding another version of an agent is installed over, as on a stock image" {
  bake_cni 1.7.1
  STUB_INSTALLED="$RELEASE_PACKAGES consul=2.0.4-1 nomad=2.0.5-1 vault=2.1.1-1" boot server-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -q "not in the image: nomad=2.0.7-1 (found: 2.0.5-1)" "$SANDBOX/output"
  grep -q "^apt-get install .* consul=2.0.4-1 nomad=2.0.7-1 vault=2.1.1-1$" "$SANDBOX/calls.log"
  # The release's packages are there: the archive is not asked for them.
  [ "$(grep -c "^apt-get install" "$SANDBOX/calls.log")" -eq 1 ]
}

@test "an image whose CNI plugins are another release, or whose files differ, gets the pinned ones" {
  bake_cni 1.6.0
  STUB_INSTALLED="$RELEASE_PACKAGES $PINNED" boot client-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -q "not in the image: CNI plugins v1.7.1" "$SANDBOX/output"
  grep -q "^curl .*/v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz$" "$SANDBOX/calls.log"
  rm -rf "${SANDBOX:?}"/* && bake_cni 1.7.1
  STUB_INSTALLED="$RELEASE_PACKAGES $PINNED" STUB_FAIL_ALWAYS="sha256sum --quiet --strict" boot client-inline
  grep -q "the image's CNI plugins differ from the checksums of v1.7.1" "$SANDBOX/output"
  grep -q "^curl .*/v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz$" "$SANDBOX/calls.log"
}

@test "ROLE=image bakes what either role needs and leaves no key, identity or settings behind" {
  mkdir -p "$SANDBOX/opt-seed/vault/tls" "$SANDBOX/var-lib-seed/dbus"
  : >"$SANDBOX/opt-seed/vault/tls/tls.key"
  # As debootstrap leaves it (dbus's postinst, before any /etc/machine-id): an ID of its own.
  echo 273c712b5ef841749e4c5bce9327891e >"$SANDBOX/var-lib-seed/dbus/machine-id"
  boot image
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -q "^apt-get install .* ca-certificates curl gnupg jq docker.io nftables openjdk-21-jre-headless$" "$SANDBOX/calls.log"
  grep -q "^apt-get install .* consul=2.0.4-1 nomad=2.0.7-1 vault=2.1.1-1 consul-cni=2.0.3-1$" "$SANDBOX/calls.log"
  grep -q "^curl .*/v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz$" "$SANDBOX/calls.log"
  grep -Fxq "systemctl disable consul.service nomad.service vault.service docker.service docker.socket containerd.service nftables.service" "$SANDBOX/calls.log"
  grep -Fxq "cloud-init clean --logs" "$SANDBOX/calls.log"
  # The machine ID as Debian's cloud images leave it: /etc/machine-id empty (no first boot, so no preset
  # enables what was disabled above), D-Bus's own copy gone (a whiteout in the overlay).
  [ -f "$SANDBOX/upper_etc/machine-id" ]
  [ ! -s "$SANDBOX/upper_etc/machine-id" ]
  [ -c "$SANDBOX/upper_var_lib/dbus/machine-id" ]
  [ ! -e "$SANDBOX/upper_etc/systemd/system-preset" ]
  # Envoy from Docker Hub as a docker-archive, by the name Nomad asks Docker for; skopeo goes again.
  grep -Fxq "skopeo copy --quiet docker://docker.io/envoyproxy/envoy:v1.37.4 docker-archive:/opt/hashistack/container-images/docker.io_envoyproxy_envoy_v1.37.4.tar:docker.io/envoyproxy/envoy:v1.37.4" "$SANDBOX/calls.log"
  # Through apt_install, as every install: after the repair, keeping the configs cloud-init wrote.
  grep -Fxq "apt-get install -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef --no-install-recommends skopeo" "$SANDBOX/calls.log"
  grep -q "^apt-get purge -y -q --autoremove skopeo$" "$SANDBOX/calls.log"
  grep -q "^/opt/hashistack/container-images/docker.io_envoyproxy_envoy_v1.37.4.tar$" "$SANDBOX/opt.txt"
  # The Vault package's self-signed key, the settings and the script itself are gone; nothing started.
  run ! grep -q "/opt/vault/tls" "$SANDBOX/opt.txt"
  grep -q "^/opt/cni/bin/.hashistack-cni-plugins$" "$SANDBOX/opt.txt"
  # Written into the overlay before the run (the script read the first), removed by it.
  [ ! -e "$SANDBOX/upper_etc/hashistack/bootstrap.env" ]
  [ ! -e "$SANDBOX/upper_usr_local/sbin/hashistack-bootstrap" ]
  run ! grep -q "^systemctl \(enable\|start\)" "$SANDBOX/calls.log"
  run ! grep -q "consul.d\|nomad.d" "$SANDBOX/modes.txt"
  [ "$(last_line "$SANDBOX/console")" = "hashistack-bootstrap: done" ]
}

@test "ROLE=image keeps D-Bus's machine ID when it is only a link to /etc/machine-id" {
  mkdir -p "$SANDBOX/var-lib-seed/dbus"
  ln -s /etc/machine-id "$SANDBOX/var-lib-seed/dbus/machine-id"
  boot image
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  [ "$(readlink "$SANDBOX/upper_var_lib/dbus/machine-id")" = /etc/machine-id ]
  [ ! -s "$SANDBOX/upper_etc/machine-id" ]
}

# The Envoy archive a baked image holds (bake_container_images writes it; the stub's archive names it).
ENVOY=docker.io/envoyproxy/envoy:v1.37.4
ENVOY_ARCHIVE=hashistack/container-images/docker.io_envoyproxy_envoy_v1.37.4.tar
bake_envoy() {
  mkdir -p "$(dirname "$SANDBOX/opt-seed/$ENVOY_ARCHIVE")"
  echo "$1" >"$SANDBOX/opt-seed/$ENVOY_ARCHIVE"
}

@test "a baked client loads Envoy from the image into Docker, once Docker runs, before it is done" {
  bake_cni 1.7.1 && bake_envoy "$ENVOY"
  STUB_INSTALLED="$RELEASE_PACKAGES $PINNED" boot client-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  start=$(grep -n "^systemctl start docker.service$" "$SANDBOX/calls.log" | cut -d: -f1)
  load=$(grep -n "^docker load --quiet --input /opt/$ENVOY_ARCHIVE$" "$SANDBOX/calls.log" | cut -d: -f1)
  [ -n "$start" ]
  [ -n "$load" ]
  [ "$start" -lt "$load" ]
  # Checked after the load, not assumed.
  [ "$(grep -c "^docker image inspect $ENVOY$" "$SANDBOX/calls.log")" -eq 2 ]
  [ "$(last_line "$SANDBOX/console")" = "hashistack-bootstrap: done" ]
}

@test "a client whose Docker holds Envoy already (a re-run) loads nothing; a stock one leaves it to the first task" {
  bake_cni 1.7.1 && bake_envoy "$ENVOY"
  STUB_INSTALLED="$RELEASE_PACKAGES $PINNED" STUB_DOCKER_IMAGES="$ENVOY" boot client-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  run ! grep -q "^docker load" "$SANDBOX/calls.log"
  rm -rf "${SANDBOX:?}"/*
  boot client-inline
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -Fq "not in the image: $ENVOY (Docker pulls it when the first Connect task starts)" "$SANDBOX/output"
  run ! grep -q "^docker load" "$SANDBOX/calls.log"
}

@test "an image whose archive does not hold the pinned Envoy stops the boot with the way out" {
  bake_cni 1.7.1 && bake_envoy docker.io/envoyproxy/envoy:v1.36.0
  STUB_INSTALLED="$RELEASE_PACKAGES $PINNED" boot client-inline
  [ "$STATUS" -ne 0 ]
  [[ "$(last_line "$SANDBOX/console")" == "hashistack-bootstrap: FAILED while loading $ENVOY into Docker: /opt/$ENVOY_ARCHIVE does not hold $ENVOY. Rebuild the image (make image), or boot the stock image. Then re-run: sudo "*" (full log: /var/log/hashistack-bootstrap.log)" ]]
}

@test "with dockerHubMirror the bake pulls Envoy from the mirror, and the clients' Docker pulls through it" {
  boot image-mirror
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  grep -q "^skopeo copy --quiet docker://registry.example.com:5000/envoyproxy/envoy:v1.37.4 docker-archive:.*:docker.io/envoyproxy/envoy:v1.37.4$" "$SANDBOX/calls.log"
  rm -rf "${SANDBOX:?}"/*
  STUB_KEY_FINGERPRINT=0123456789ABCDEF0123456789ABCDEF01234567 boot client-mirror
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  [ "$(jq -c '."registry-mirrors"' "$SANDBOX/upper_etc/docker/daemon.json")" = '["https://registry.example.com:5000"]' ]
}

@test "a pull of Envoy that breaks halfway is retried, each attempt from an empty archive" {
  STUB_SKOPEO_BREAK_ONCE=1 boot image
  [ "$STATUS" -eq 0 ] || { cat "$SANDBOX/output"; false; }
  [ "$(grep -c "^skopeo copy" "$SANDBOX/calls.log")" -eq 2 ]
  grep -q "^/opt/$ENVOY_ARCHIVE$" "$SANDBOX/opt.txt"
}
