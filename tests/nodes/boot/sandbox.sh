#!/usr/bin/env bash
# Runs the boot script as cloud-init would on a fresh node (the copy its user-data writes,
# /usr/local/sbin/hashistack-bootstrap), but in a private mount
# namespace: /etc, /usr/share, /usr/local (the node's scripts), /var/lib and /var/log are overlays whose writes land
# in $SANDBOX, /opt is empty, /dev/console is a file, and every command that would touch the network,
# packages or systemd is a recording stub (tests/nodes/boot/stubs). Nothing on the host changes.
#
# Usage (as root, or through `unshare --map-root-user`): sandbox.sh SANDBOX NODE_FILES_JSON
#   NODE_FILES_JSON: the node's write_files ([{path, content, permissions}], from its user-data).
# Leaves in SANDBOX: calls.log (one line per stubbed call), console (what reached the console),
# modes.txt (mode owner:group path of every file the run left under /etc, /opt and /usr/local/sbin),
# opt.txt (every path left under /opt), status (exit code). What SANDBOX/opt-seed holds is in /opt
# before the run (what an image brings there), and what SANDBOX/var-lib-seed holds in /var/lib.
set -euo pipefail
sandbox=$1 files=$2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

for dir in /etc /usr/share /usr/local /var/lib /var/log; do
  name=${dir//\//_}
  mkdir -p "$sandbox/upper$name" "$sandbox/work$name"
  mount -t overlay overlay -o "lowerdir=$dir,upperdir=$sandbox/upper$name,workdir=$sandbox/work$name" "$dir"
done
mount -t tmpfs tmpfs /opt
[[ ! -d "$sandbox/opt-seed" ]] || cp -a "$sandbox/opt-seed/." /opt/
[[ ! -d "$sandbox/var-lib-seed" ]] || cp -a "$sandbox/var-lib-seed/." /var/lib/
: >"$sandbox/console"
mount --bind "$sandbox/console" /dev/console

# What the Debian packages would create: the agents' users and groups.
for user in consul vault; do
  getent passwd "$user" >/dev/null || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$user"
done

# cloud-init's write_files, as the node's user-data lists them.
jq -c '.[]' "$files" | while read -r file; do
  path=$(jq -r .path <<<"$file")
  install -D -m "$(jq -r .permissions <<<"$file")" /dev/null "$path"
  jq -j .content <<<"$file" >"$path"
done

# Every command that reaches the network, the package manager, the kernel or systemd is a stub.
export STUB_LOG="$sandbox/calls.log" STUB_STATE="$sandbox/stub-state" STUB_HANDLERS="$here/stubs/handlers"
mkdir -p "$STUB_STATE" "$sandbox/bin"
for command in apt-get apt-mark cloud-init curl docker dpkg dpkg-query gpg ip modprobe sha256sum skopeo sleep sysctl systemctl tar; do
  ln -sf "$here/stubs/stub.sh" "$sandbox/bin/$command"
done
status=0
PATH="$sandbox/bin:$PATH" bash /usr/local/sbin/hashistack-bootstrap >"$sandbox/output" 2>&1 || status=$?
echo "$status" >"$sandbox/status"
find /etc/consul.d /etc/nomad.d /etc/vault.d /etc/hashistack /opt /etc/systemd/system /usr/local/sbin \
  /var/log/hashistack-bootstrap.log \
  -exec stat -c '%a %U:%G %n' {} + 2>/dev/null | sort -k3 >"$sandbox/modes.txt" || true
find /opt | sort >"$sandbox/opt.txt"
