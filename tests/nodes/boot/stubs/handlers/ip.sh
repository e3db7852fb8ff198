# shellcheck shell=bash
# ip route get: the node's source address.
echo "1.1.1.1 via 10.0.0.1 dev eth0 src 10.42.0.20 uid 0"
