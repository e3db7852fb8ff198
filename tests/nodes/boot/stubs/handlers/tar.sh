# shellcheck shell=bash
# tar -tzf: the CNI release's listing, as its tarball names its members ("./" first, then "./<plugin>").
[[ "$1" != -tzf ]] || printf './\n./bridge\n./host-local\n'
