#!/usr/bin/env bash
# First-boot provisioning of a hashistack node, run once by cloud-init (runcmd), after write_files put
# the agent configs in place. Per-node settings come from /etc/hashistack/bootstrap.env; on AWS the
# secret files are fetched from SSM Parameter Store. Every step is safe to re-run:
# `sudo /usr/local/sbin/hashistack-bootstrap` after a failed boot.
# An image that holds the pinned versions (image_holds_pinned) skips the install. ROLE=image bakes
# one (scripts/node_image.py): install for both roles, then seal_image; no configuration.
# Its last line, "hashistack-bootstrap: done" or "hashistack-bootstrap: FAILED ...", also goes to the
# serial console, where `virsh console`, the EC2 console output and the platforms' gates can read it.
# -E: functions inherit the ERR trap, so a failure anywhere ends with the FAILED line.
set -Eeuo pipefail
readonly LOG=/var/log/hashistack-bootstrap.log
exec > >(tee -a "$LOG") 2>&1

# shellcheck source=/dev/null
. /etc/hashistack/bootstrap.env
: "${ROLE:?}" "${CONSUL_VERSION:?}" "${NOMAD_VERSION:?}" "${VAULT_VERSION:?}" "${SECRETS_SOURCE:?}"
: "${CNI_PLUGINS_VERSION:?}" "${CONSUL_CNI_VERSION:?}" "${RELEASE_PACKAGES:?}"
# The package source (the hashicorpAptUrl and hashicorpKeyFingerprint settings): the key served at
# <url>/gpg must be exactly the configured one.
: "${HASHICORP_APT_URL:?}" "${HASHICORP_KEY_FINGERPRINT:?}" "${CNI_PLUGINS_URL:?}"
# Envoy, and a Docker Hub mirror (dockerHubMirror; empty: Docker Hub).
: "${ENVOY_IMAGE:?}" "${ENVOY_ARCHIVE:?}" "${DOCKER_HUB_MIRROR?}"
readonly KEYRING=/usr/share/keyrings/hashicorp-archive-keyring.gpg
# Written by install_cni_plugins: the version, then a sha256sum line per plugin.
readonly CNI_MANIFEST=/opt/cni/bin/.hashistack-cni-plugins
readonly IMDS=http://169.254.169.254/latest
ARCH="$(dpkg --print-architecture)"
readonly ARCH
WORK="$(mktemp -d)"
readonly WORK
trap 'rm -rf "$WORK"' EXIT

# Progress goes to stderr, so a log line inside $(...) never lands in a captured value.
log() { printf '==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# The last line of the run, on the serial console too (best effort: there may be none).
console() {
  log "$*"
  printf 'hashistack-bootstrap: %s\n' "$*" >/dev/console 2>/dev/null || true
}

STEP="reading the settings"
step() {
  STEP=$1
  log "$1"
}

# report_failure CAUSE WHAT_TO_DO: the run's one FAILED line, once (the marker is seen by subshells).
report_failure() {
  trap - ERR
  if [[ ! -e "$WORK/failed" ]]; then
    : >"$WORK/failed"
    console "FAILED while ${STEP}: $1. $2 Then re-run: sudo $0 (full log: $LOG)"
  fi
}

# fail CAUSE WHAT_TO_DO: a failure whose cause is known.
fail() {
  report_failure "$@"
  exit 1
}

# Any other failure: the command that failed, in the step it belongs to, with its exit status.
on_error() {
  local status=$? command=$BASH_COMMAND line=${BASH_LINENO[0]}
  report_failure "\`${command}\` exited ${status} (line ${line})" "Fix the cause."
  exit "$status"
}
trap on_error ERR

# Every download is bounded (curl has no overall timeout of its own, and waits minutes on a network
# that drops packets), so a source that does not answer fails within the retry budget.
readonly CURL=(curl --connect-timeout 10 --max-time 300)

# retry ATTEMPTS COMMAND...: first-boot network steps race DHCP, DNS and mirrors.
retry() {
  local attempts=$1 n=1
  shift
  until "$@"; do
    ((n < attempts)) || fail "\`$*\` failed ${attempts} times" \
      "Check that the node reaches what it names (network, DNS, the package source or the AWS API)."
    log "retrying in $((n * 5))s: $*"
    sleep $((n * 5))
    n=$((n + 1))
  done
}

node_ip() {
  if [[ -n "${NODE_IP:-}" ]]; then
    echo "$NODE_IP"
  else
    ip -4 route get 1.1.1.1 | awk '{for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit }}'
  fi
}

# ssm_get_parameters CREDENTIALS ENDPOINT NAMES: one signed GetParameters call into $WORK/ssm.json; on
# an HTTP error it logs SSM's own answer (which says what was refused), then fails for retry.
ssm_get_parameters() {
  local code
  code=$("${CURL[@]}" -sS -o "$WORK/ssm.json" -w '%{http_code}' -K "$1" --aws-sigv4 "aws:amz:${SSM_REGION}:ssm" \
    -H 'Content-Type: application/x-amz-json-1.1' -H 'X-Amz-Target: AmazonSSM.GetParameters' --data "$3" "$2") || return 1
  [[ "$code" == 200 ]] && return 0
  log "SSM answered HTTP $code: $(head -c 500 "$WORK/ssm.json")"
  return 1
}

fetch_ssm_secrets() {
  # SigV4-signed SSM call with the instance role's credentials from IMDSv2 (curl >= 7.75 signs
  # requests itself, so the image needs no AWS CLI). Each line of the manifest: NAME<TAB>DESTINATION.
  local manifest=/etc/hashistack/ssm-secrets.tsv credentials="$WORK/ssm-credentials.curlrc" token role creds domain names response missing
  step "fetching secrets from SSM Parameter Store ($SSM_REGION)"
  token=$(retry 10 "${CURL[@]}" -fsS -X PUT "$IMDS/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  role=$(retry 10 "${CURL[@]}" -fsS -H "X-aws-ec2-metadata-token: $token" "$IMDS/meta-data/iam/security-credentials/")
  creds=$(retry 10 "${CURL[@]}" -fsS -H "X-aws-ec2-metadata-token: $token" "$IMDS/meta-data/iam/security-credentials/$role")
  # The partition's domain (amazonaws.com, amazonaws.com.cn, ...): IMDS category services/domain.
  domain=$(retry 10 "${CURL[@]}" -fsS -H "X-aws-ec2-metadata-token: $token" "$IMDS/meta-data/services/domain")
  names=$(cut -f1 "$manifest" | sort -u | jq -R . | jq -cs '{Names: ., WithDecryption: true}')
  # Credentials go to curl in a root-only file, never on a command line; unlike a pipe, every
  # attempt reads it again.
  (umask 077 && jq -r '"user = \"\(.AccessKeyId):\(.SecretAccessKey)\"\nheader = \"x-amz-security-token: \(.Token)\""' \
    <<<"$creds" >"$credentials")
  retry 10 ssm_get_parameters "$credentials" "https://ssm.${SSM_REGION}.${domain}/" "$names"
  response=$(<"$WORK/ssm.json")
  rm -f "$credentials" "$WORK/ssm.json"
  missing=$(jq -r '.InvalidParameters | join(" ")' <<<"$response")
  [[ -z "$missing" ]] || fail "SSM parameters missing or not readable by this instance's role: $missing" \
    "Check the parameters under the stack's prefix and the instance role's ssm:GetParameters grant."
  while IFS=$'\t' read -r name destination; do
    install -D -m 0600 /dev/null "$destination"
    jq -r --arg name "$name" '.Parameters[] | select(.Name == $name) | .Value' <<<"$response" >"$destination"
  done <"$manifest"
}

install_hashicorp_repository() {
  local key="$WORK/hashicorp.asc" fingerprints
  step "adding the HashiCorp apt repository $HASHICORP_APT_URL"
  retry 10 "${CURL[@]}" -fsSL "$HASHICORP_APT_URL/gpg" -o "$key"
  # The primary key fingerprints in the file, one per line; exactly the pinned one is accepted.
  fingerprints=$(gpg --show-keys --with-colons "$key" | awk -F: '$1 == "pub" { p = 1; next } p && $1 == "fpr" { print $10; p = 0 }')
  [[ "$fingerprints" == "$HASHICORP_KEY_FINGERPRINT" ]] ||
    fail "HashiCorp signing key mismatch: got '${fingerprints//$'\n'/ }', expected $HASHICORP_KEY_FINGERPRINT" \
      "Do not trust this repository until the key is explained."
  gpg --dearmor <"$key" >"$KEYRING.tmp" && mv "$KEYRING.tmp" "$KEYRING"
  # shellcheck source=/dev/null
  echo "deb [arch=$ARCH signed-by=$KEYRING] $HASHICORP_APT_URL $(. /etc/os-release && echo "$VERSION_CODENAME") main" \
    >/etc/apt/sources.list.d/hashicorp.list
  retry 10 apt-get update -q
}

# This role's HashiCorp packages as name=version-1 (HashiCorp's revision).
hashicorp_packages() {
  local packages=("consul=${CONSUL_VERSION}-1" "nomad=${NOMAD_VERSION}-1")
  [[ "$ROLE" == client ]] || packages+=("vault=${VAULT_VERSION}-1")
  [[ "$ROLE" == server ]] || packages+=("consul-cni=${CONSUL_CNI_VERSION}-1")
  printf '%s\n' "${packages[@]}"
}

# installed_version PACKAGE: its version if installed, else nothing. Status-Abbrev (dpkg-query(1)):
# wanted i(nstall) or h(old), as apt-mark hold leaves ours; then i(nstalled).
installed_version() {
  dpkg-query -W -f '${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null | awk '$1 ~ /^[ih]i$/ { print $2 }'
}

# Whether all this role installs is here at the pinned versions, the CNI plugins checked against
# their recorded checksums. Logs the first thing missing.
image_holds_pinned() {
  local package spec missing
  missing=$(missing_release_packages)
  [[ -z "$missing" ]] || { log "not in the image: ${missing%% *}"; return 1; }
  while read -r spec; do
    package=${spec%%=*}
    [[ "$(installed_version "$package")" == "${spec#*=}" ]] ||
      { log "not in the image: $spec (found: $(installed_version "$package" || true))"; return 1; }
  done < <(hashicorp_packages)
  if [[ "$ROLE" != server ]]; then
    [[ "$(head -n 1 "$CNI_MANIFEST" 2>/dev/null)" == "$CNI_PLUGINS_VERSION" ]] ||
      { log "not in the image: CNI plugins v$CNI_PLUGINS_VERSION"; return 1; }
    tail -n +2 "$CNI_MANIFEST" | (cd /opt/cni/bin && sha256sum --quiet --strict -c -) ||
      { log "the image's CNI plugins differ from the checksums of v$CNI_PLUGINS_VERSION"; return 1; }
  fi
}

# The release's packages that are not installed, space-separated.
missing_release_packages() {
  local package missing=()
  for package in $RELEASE_PACKAGES; do
    [[ -n "$(installed_version "$package")" ]] || missing+=("$package")
  done
  echo "${missing[*]}"
}

# A JVM that dies while ca-certificates-java writes Java's keystore (the boot test saw a SIGSEGV in its
# trigger, under emulation) leaves the package half-configured and the keystore cut short, which its
# postinst then cannot open on any later attempt ("Cannot open Java keystore"). While the package is
# unpacked but not configured, the keystore is its unfinished work: it goes, and the package's own
# `fresh` marker makes the next configure build it again from /etc/ssl/certs (postinst, update_cacerts).
repair_java_keystore() {
  local keystore=/etc/ssl/certs/java/cacerts status
  status=$(dpkg-query -W -f '${db:Status-Abbrev}' ca-certificates-java 2>/dev/null) || return 0
  # dpkg-query(1): the second letter is the state; U(npacked), half-configured (F), triggers (W, t).
  [[ "${status:1:1}" == [UFWt] && -e "$keystore" ]] || return 0
  log "ca-certificates-java is not configured (dpkg: ${status% }): removing $keystore for its configure to rebuild"
  rm -f "$keystore"
  install -d /var/lib/ca-certificates-java
  : >/var/lib/ca-certificates-java/fresh
}

# apt_install ARGS...: one attempt, after repairing what an attempt that died may have left (apt
# configures every unfinished package first, so one left broken fails any install). --force-confold
# keeps the configs cloud-init already wrote where the packages ship defaults.
apt_install() {
  repair_java_keystore
  env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef "$@"
}

# The release's packages (Docker, Java, jq, ...) from its archive, which updates them: only those missing.
install_release_packages() {
  local missing
  read -ra missing <<<"$(missing_release_packages)"
  ((${#missing[@]})) || return 0
  step "installing ${missing[*]} from the release's archive"
  retry 10 apt-get update -q
  retry 5 apt_install "${missing[@]}"
}

install_hashicorp_packages() {
  local packages
  mapfile -t packages < <(hashicorp_packages)
  step "installing ${packages[*]}"
  retry 5 apt_install --allow-change-held-packages "${packages[@]}"
  apt-mark hold "${packages[@]%%=*}" >/dev/null
}

install_cni_plugins() {
  local tgz="cni-plugins-linux-${ARCH}-v${CNI_PLUGINS_VERSION}.tgz"
  local url="${CNI_PLUGINS_URL}/v${CNI_PLUGINS_VERSION}/$tgz"
  step "installing CNI plugins v$CNI_PLUGINS_VERSION"
  (cd "$WORK" && retry 10 "${CURL[@]}" -fsSLO "$url" && retry 10 "${CURL[@]}" -fsSLO "$url.sha256" && sha256sum -c "$tgz.sha256")
  install -d -m 0755 /opt/cni/bin /opt/cni/config
  tar -C /opt/cni/bin -xzf "$WORK/$tgz"
  {
    echo "$CNI_PLUGINS_VERSION"
    tar -tzf "$WORK/$tgz" | sed -e 's|^\./||' -e '/^$/d' -e '/\/$/d' | (cd /opt/cni/bin && xargs -r sha256sum --)
  } >"$CNI_MANIFEST.tmp"
  mv "$CNI_MANIFEST.tmp" "$CNI_MANIFEST"
}

install_software() {
  step "checking what the image holds"
  if image_holds_pinned; then
    log "the image holds the pinned versions: skipping download and install"
    return 0
  fi
  install_release_packages
  install_hashicorp_repository
  install_hashicorp_packages
  [[ "$ROLE" == server ]] || install_cni_plugins
}

# save_envoy SOURCE: Envoy as a `docker save` archive (docker-archive, by the name Nomad asks for); skopeo
# writes no archive over a non-empty file, so every attempt starts without one.
save_envoy() {
  rm -f "$ENVOY_ARCHIVE"
  skopeo copy --quiet "docker://$1" "docker-archive:$ENVOY_ARCHIVE:$ENVOY_IMAGE"
}

# ROLE=image: the Connect sidecars' Envoy, for the clients' Docker to load at boot; no Connect task then
# waits for a pull (Docker Hub's anonymous pulls: 10 an hour per address). Docker's daemon cannot run in
# the bake (virt-customize runs commands, boots nothing), so skopeo pulls it, and goes with the bake.
bake_container_images() {
  local source=$ENVOY_IMAGE
  [[ -z "$DOCKER_HUB_MIRROR" ]] || source="${DOCKER_HUB_MIRROR#https://}/${ENVOY_IMAGE#docker.io/}"
  step "saving $ENVOY_IMAGE into the image (from $source)"
  retry 5 apt_install --no-install-recommends skopeo
  install -d -m 0755 "$(dirname "$ENVOY_ARCHIVE")"
  retry 10 save_envoy "$source"
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -q --autoremove skopeo
}

# Clients: Envoy from the image into Docker (once; a re-run finds it there). Docker starts here if it
# has not yet. Without the archive (the stock image), Docker pulls Envoy at the first Connect task.
load_container_images() {
  systemctl start docker.service
  docker image inspect "$ENVOY_IMAGE" >/dev/null 2>&1 && return 0
  if [[ ! -f "$ENVOY_ARCHIVE" ]]; then
    log "not in the image: $ENVOY_IMAGE (Docker pulls it when the first Connect task starts)"
    return 0
  fi
  step "loading $ENVOY_IMAGE into Docker"
  docker load --quiet --input "$ENVOY_ARCHIVE" >/dev/null
  docker image inspect "$ENVOY_IMAGE" >/dev/null 2>&1 ||
    fail "$ENVOY_ARCHIVE does not hold $ENVOY_IMAGE" "Rebuild the image (make image), or boot the stock image."
}

# The package puts consul-cni on its own path; Nomad looks for every plugin in cni_path.
link_consul_cni() {
  local consul_cni
  consul_cni=$(dpkg -L consul-cni | grep -m1 '/consul-cni$') ||
    fail "consul-cni binary not found in its package" "Check the consulCniVersion setting against the repository."
  [[ "$consul_cni" == /opt/cni/bin/consul-cni ]] || ln -sf "$consul_cni" /opt/cni/bin/consul-cni
}

# ROLE=image: nothing of one machine stays in the image.
seal_image() {
  step "sealing the image"
  # Every unit as a stock node has it before its boot script runs: the agents off (the script enables the
  # role's own; the boot test saw a baked client run Vault), Docker's daemons off (clients enable them,
  # configure_dns), Debian's nftables off as the package leaves it.
  systemctl disable consul.service nomad.service vault.service docker.service docker.socket containerd.service \
    nftables.service
  # Vault's postinst makes a self-signed key (hashicorp/vault .release/linux/postinst@1e1cc61e).
  rm -rf /opt/vault/tls
  apt-get clean
  rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_* /var/lib/systemd/random-seed
  cloud-init clean --logs
  # The machine ID as Debian's cloud images leave it (debian-cloud-images config_space/bookworm/scripts/
  # LAST/10-cleanup@1bf428c7): an empty /etc/machine-id, which systemd fills at boot, and no D-Bus copy,
  # which it would give every node (src/shared/machine-id-setup.c reads it unless it is a symlink). Not
  # `cloud-init clean --machine-id`, whose missing or "uninitialized" file makes the boot systemd's first,
  # which enables every unit the image holds by preset (the boot test saw Consul, Nomad and Vault start
  # before their configuration, over and over).
  : >/etc/machine-id
  [[ -L /var/lib/dbus/machine-id ]] || rm -f /var/lib/dbus/machine-id
  rm -f /etc/hashistack/bootstrap.env /usr/local/sbin/hashistack-bootstrap
  rm -f "$LOG"
}

# Agents read their configs, certificate and key through their group; nobody else reads them.
# install_agent_files DIR GROUP CERT_NAME KEY_NAME
install_agent_files() {
  local dir=$1 group=$2
  install -d "$dir/tls"
  install -m 0640 /etc/hashistack/tls/ca.pem "$dir/tls/ca.pem"
  install -m 0640 /etc/hashistack/tls/node.pem "$dir/tls/$3"
  install -m 0640 /etc/hashistack/tls/node-key.pem "$dir/tls/$4"
  chown -R "root:$group" "$dir"
  find "$dir" -type d -exec chmod 0750 {} +
  find "$dir" -type f -exec chmod 0640 {} +
}

configure_dns() {
  # resolved forwards *.<domain> to Consul; containers reach it on the node IP (README, step 5: who else can).
  if [[ "$ROLE" == client ]]; then
    local ip
    ip=$(node_ip)
    install -d /etc/systemd/resolved.conf.d /etc/docker
    printf '[Resolve]\nDNSStubListenerExtra=%s\n' "$ip" >/etc/systemd/resolved.conf.d/docker-stub.conf
    # Containers in docker.slice, not system.slice, so tasks.nft can keep them from instance
    # metadata (Nomad 1.10's docker driver sets no cgroup parent of its own).
    # Docker Hub pulls through the mirror, when there is one.
    jq -n --arg ip "$ip" --arg mirror "$DOCKER_HUB_MIRROR" \
      '{"dns": [$ip], "cgroup-parent": "docker.slice"} + if $mirror == "" then {} else {"registry-mirrors": [$mirror]} end' \
      >/etc/docker/daemon.json
  fi
  # Every program's lookups through resolved's stub, so that *.<domain> reaches Consul for them too:
  # Debian's cloud images point /etc/resolv.conf at the uplink servers (resolved's resolv.conf),
  # which libc and Go then ask directly, never seeing the routing domain (Ubuntu's already point here).
  ln -sfn ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
  systemctl restart systemd-resolved
}

# One line per agent at the end: enabled, and active or still activating (a client's Consul waits for
# the agent token the bootstrap creates once every server's gate has passed).
report_agents() {
  local unit
  for unit in "$@"; do
    log "$unit: $(systemctl is-enabled "$unit" 2>&1 || true), $(systemctl is-active "$unit" 2>&1 || true)"
  done
}

main() {
  log "hashistack bootstrap: role=$ROLE secrets=$SECRETS_SOURCE"
  install_software
  if [[ "$ROLE" == image ]]; then
    bake_container_images
    seal_image
    console "done"
    return 0
  fi
  step "preparing the node"
  [[ "$SECRETS_SOURCE" != ssm ]] || fetch_ssm_secrets
  if [[ "$ROLE" == client ]]; then
    # The CA alone, world-readable, for jobs that mount the `cluster-ca` host volume.
    install -D -m 0644 /etc/hashistack/tls/ca.pem /etc/hashistack/public/ca.pem
    link_consul_cni
    modprobe br_netfilter
    sysctl --system >/dev/null
  fi

  step "installing the agents' configuration"
  # The packages ship example configs (Nomad's runs a one-node server and client) beside ours.
  rm -f /etc/consul.d/consul.hcl /etc/nomad.d/nomad.hcl
  install_agent_files /etc/consul.d consul agent.pem agent-key.pem
  install_agent_files /etc/nomad.d root agent.pem agent-key.pem
  install -d -o consul -g consul -m 0750 /opt/consul
  # Root's: Nomad runs as root, and the package's postinst gives the data directory to its `nomad`
  # user, which nothing runs as (nomad .release/linux/postinst@v2.0.5; the boot test saw it).
  install -d -o root -g root -m 0700 /opt/nomad /opt/nomad/data
  if [[ "$ROLE" == server ]]; then
    # Ours is vault.hcl, the one file the unit reads; --force-confold left the packaged one here.
    rm -f /etc/vault.d/vault.hcl.dpkg-dist /etc/vault.d/vault.env.dpkg-dist
    install_agent_files /etc/vault.d vault vault.pem vault-key.pem
    install -d -o vault -g vault -m 0750 /opt/vault /opt/vault/data /var/log/vault
  fi

  step "configuring DNS"
  configure_dns
  # Enabled, started, never waited for: Consul is ready only once joined (a client's, once it has
  # its certificate, which needs a token made after the servers' gates). Nomad and Vault want Consul
  # without waiting for it. On clients the task firewall comes first (Nomad requires it).
  local agents=(consul.service nomad.service)
  if [[ "$ROLE" == server ]]; then
    agents+=(vault.service)
  else # Nomad requires it, and starts after it: no task runs before tasks.nft is loaded
    agents=(hashistack-task-firewall.service docker.service "${agents[@]}")
    # AWS: stops (so drains) Nomad when the autoscaling group terminates the instance.
    [[ "$SECRETS_SOURCE" != ssm ]] || agents+=(hashistack-asg-drain.service)
  fi
  step "starting ${agents[*]}"
  # Enabling makes links from the unit files on disk; one reload then reads those, the files cloud-init
  # wrote and the links together (each plain `enable` reloads systemd itself: seconds under emulation).
  systemctl enable --no-reload "${agents[@]}"
  # Off in a baked image (seal_image); on a stock one Docker's package has enabled them already.
  [[ "$ROLE" != client ]] || systemctl enable --no-reload docker.socket containerd.service
  systemctl daemon-reload
  # A Docker already running (the stock image installed it, or a re-run) restarts to read daemon.json;
  # otherwise it starts with the agents, not before them.
  [[ "$ROLE" != client ]] || systemctl try-restart docker.service
  systemctl start --no-block "${agents[@]}"
  [[ "$ROLE" != client ]] || load_container_images
  report_agents "${agents[@]}"
  console "done"
}

main "$@"
