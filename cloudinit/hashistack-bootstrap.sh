#!/usr/bin/env bash
# First-boot provisioning of a hashistack node, run once by cloud-init (runcmd), after write_files put
# the agent configs in place and the Ubuntu packages are installed. Per-node settings come from
# /etc/hashistack/bootstrap.env; on AWS the secret files are fetched from SSM Parameter Store first.
# Every step is safe to re-run: `sudo /usr/local/sbin/hashistack-bootstrap` after a failed boot.
set -euo pipefail
exec > >(tee -a /var/log/hashistack-bootstrap.log) 2>&1

# shellcheck source=/dev/null
. /etc/hashistack/bootstrap.env
: "${ROLE:?}" "${CONSUL_VERSION:?}" "${NOMAD_VERSION:?}" "${SECRETS_SOURCE:?}"

# HashiCorp's Linux package signing key; the key served with the repository must match it.
readonly HASHICORP_KEY_FINGERPRINT="798AEC654E5C15428C8E42EEAA16FCBCA621E701"
readonly KEYRING=/usr/share/keyrings/hashicorp-archive-keyring.gpg
readonly IMDS=http://169.254.169.254/latest
ARCH="$(dpkg --print-architecture)"
readonly ARCH
WORK="$(mktemp -d)"
readonly WORK
trap 'rm -rf "$WORK"' EXIT

log() { printf '==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() {
  log "FAILED: $*"
  exit 1
}

# retry ATTEMPTS COMMAND...: first-boot network steps race DHCP, DNS and mirrors.
retry() {
  local attempts=$1 n=1
  shift
  until "$@"; do
    ((n < attempts)) || return 1
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

fetch_ssm_secrets() {
  # SigV4-signed SSM call with the instance role's credentials from IMDSv2 (curl >= 7.75 signs
  # requests itself, so the image needs no AWS CLI). Each line of the manifest: NAME<TAB>DESTINATION.
  local manifest=/etc/hashistack/ssm-secrets.tsv token role creds names response missing
  log "fetching secrets from SSM Parameter Store ($SSM_REGION)"
  token=$(retry 10 curl -fsS -X PUT "$IMDS/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  role=$(retry 10 curl -fsS -H "X-aws-ec2-metadata-token: $token" "$IMDS/meta-data/iam/security-credentials/")
  creds=$(curl -fsS -H "X-aws-ec2-metadata-token: $token" "$IMDS/meta-data/iam/security-credentials/$role")
  names=$(cut -f1 "$manifest" | sort -u | jq -R . | jq -cs '{Names: ., WithDecryption: true}')
  # Credentials go to curl through a config on a pipe, never on a command line.
  response=$(
    jq -r '"user = \"\(.AccessKeyId):\(.SecretAccessKey)\"\nheader = \"x-amz-security-token: \(.Token)\""' <<<"$creds" |
      retry 10 curl -fsS -K - --aws-sigv4 "aws:amz:${SSM_REGION}:ssm" \
        -H 'Content-Type: application/x-amz-json-1.1' -H 'X-Amz-Target: AmazonSSM.GetParameters' \
        --data "$names" "https://ssm.${SSM_REGION}.amazonaws.com/"
  )
  missing=$(jq -r '.InvalidParameters | join(" ")' <<<"$response")
  [[ -z "$missing" ]] || fail "SSM parameters missing or not readable by this instance's role: $missing"
  while IFS=$'\t' read -r name destination; do
    install -D -m 0600 /dev/null "$destination"
    jq -r --arg name "$name" '.Parameters[] | select(.Name == $name) | .Value' <<<"$response" >"$destination"
  done <"$manifest"
}

install_hashicorp_repository() {
  local key="$WORK/hashicorp.asc" fingerprints
  log "adding the HashiCorp apt repository"
  retry 10 curl -fsSL https://apt.releases.hashicorp.com/gpg -o "$key"
  # The primary key fingerprints in the file, one per line; exactly the pinned one is accepted.
  fingerprints=$(gpg --show-keys --with-colons "$key" | awk -F: '$1 == "pub" { p = 1; next } p && $1 == "fpr" { print $10; p = 0 }')
  [[ "$fingerprints" == "$HASHICORP_KEY_FINGERPRINT" ]] ||
    fail "HashiCorp signing key mismatch: got '${fingerprints//$'\n'/ }', expected $HASHICORP_KEY_FINGERPRINT"
  gpg --dearmor <"$key" >"$KEYRING.tmp" && mv "$KEYRING.tmp" "$KEYRING"
  # shellcheck source=/dev/null
  echo "deb [arch=$ARCH signed-by=$KEYRING] https://apt.releases.hashicorp.com $(. /etc/os-release && echo "$VERSION_CODENAME") main" \
    >/etc/apt/sources.list.d/hashicorp.list
  retry 10 apt-get update -q
}

install_hashicorp_packages() {
  local packages=("consul=${CONSUL_VERSION}-1" "nomad=${NOMAD_VERSION}-1")
  if [[ "$ROLE" == server ]]; then
    packages+=("vault=${VAULT_VERSION:?}-1")
  else
    packages+=("consul-cni=${CONSUL_CNI_VERSION:?}-1")
  fi
  log "installing ${packages[*]}"
  # --force-confold keeps the configs cloud-init already wrote where the packages ship defaults.
  retry 5 env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-change-held-packages \
    -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef "${packages[@]}"
  apt-mark hold "${packages[@]%%=*}" >/dev/null
}

install_cni_plugins() {
  local tgz="cni-plugins-linux-${ARCH}-v${CNI_PLUGINS_VERSION:?}.tgz"
  local url="https://github.com/containernetworking/plugins/releases/download/v${CNI_PLUGINS_VERSION}/$tgz"
  log "installing CNI plugins v$CNI_PLUGINS_VERSION"
  (cd "$WORK" && retry 10 curl -fsSLO "$url" && retry 10 curl -fsSLO "$url.sha256" && sha256sum -c "$tgz.sha256")
  install -d -m 0755 /opt/cni/bin /opt/cni/config
  tar -C /opt/cni/bin -xzf "$WORK/$tgz"
  # The package puts consul-cni on its own path; Nomad looks for every plugin in cni_path.
  local consul_cni
  consul_cni=$(dpkg -L consul-cni | grep -m1 '/consul-cni$') || fail "consul-cni binary not found in its package"
  [[ "$consul_cni" == /opt/cni/bin/consul-cni ]] || ln -sf "$consul_cni" /opt/cni/bin/consul-cni
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
  # resolved forwards *.<domain> to Consul (resolved-consul.conf); containers reach it on the node IP.
  if [[ "$ROLE" == client ]]; then
    local ip
    ip=$(node_ip)
    install -d /etc/systemd/resolved.conf.d /etc/docker
    printf '[Resolve]\nDNSStubListenerExtra=%s\n' "$ip" >/etc/systemd/resolved.conf.d/docker-stub.conf
    printf '{\n  "dns": ["%s"]\n}\n' "$ip" >/etc/docker/daemon.json
    systemctl restart docker
  fi
  systemctl restart systemd-resolved
}

wait_for_consul() {
  log "waiting for the local Consul agent"
  local n
  for n in $(seq 1 60); do
    if curl -fsS --cacert /etc/consul.d/tls/ca.pem --cert /etc/consul.d/tls/agent.pem \
      --key /etc/consul.d/tls/agent-key.pem https://127.0.0.1:8501/v1/status/leader >/dev/null 2>&1; then
      return 0
    fi
    sleep $((n < 10 ? 2 : 5))
  done
  log "Consul has no leader yet; Nomad starts anyway and retries on its own"
}

main() {
  log "hashistack bootstrap: role=$ROLE secrets=$SECRETS_SOURCE"
  [[ "$SECRETS_SOURCE" != ssm ]] || fetch_ssm_secrets
  install_hashicorp_repository
  install_hashicorp_packages
  if [[ "$ROLE" == client ]]; then
    # The CA alone, world-readable, for jobs that mount the `cluster-ca` host volume.
    install -D -m 0644 /etc/hashistack/tls/ca.pem /etc/hashistack/public/ca.pem
    install_cni_plugins
    modprobe br_netfilter
    sysctl --system >/dev/null
  fi

  # The packages ship example configs (Nomad's runs a one-node server and client) beside ours.
  rm -f /etc/consul.d/consul.hcl /etc/nomad.d/nomad.hcl
  install_agent_files /etc/consul.d consul agent.pem agent-key.pem
  install_agent_files /etc/nomad.d root agent.pem agent-key.pem
  install -d -o consul -g consul -m 0750 /opt/consul
  install -d -m 0700 /opt/nomad /opt/nomad/data
  if [[ "$ROLE" == server ]]; then
    # Ours is vault.hcl, the one file the unit reads; --force-confold left the packaged one here.
    rm -f /etc/vault.d/vault.hcl.dpkg-dist /etc/vault.d/vault.env.dpkg-dist
    install_agent_files /etc/vault.d vault vault.pem vault-key.pem
    install -d -o vault -g vault -m 0750 /opt/vault /opt/vault/data /var/log/vault
  fi

  configure_dns
  systemctl daemon-reload
  systemctl enable --now consul.service
  wait_for_consul
  systemctl enable --now nomad.service
  if [[ "$ROLE" == server ]]; then
    systemctl enable --now vault.service
  fi
  log "done"
}

main "$@"
