# shellcheck shell=bash
# systemctl: units are enabled; an agent reports "activating" (a client's Consul waits for its token).
case "$1" in
  is-enabled) echo enabled ;;
  is-active) echo activating && exit 3 ;;
esac
