# shellcheck shell=bash
# dpkg: the architecture, and where the consul-cni package put its binary.
case "$1" in
  --print-architecture) echo amd64 ;;
  -L) echo /usr/bin/consul-cni ;;
esac
