# shellcheck shell=bash
# apt-get: succeeds, except with $STUB_APT_DIES_IN_JAVA its first install dies as the boot test saw one
# die (a JVM's SIGSEGV in ca-certificates-java's trigger): the Java keystore cut short, dpkg's error.
if [[ -n "${STUB_APT_DIES_IN_JAVA:-}" && "$1" == install && ! -e "$STUB_STATE/apt-died" ]]; then
  : >"$STUB_STATE/apt-died"
  mkdir -p /etc/ssl/certs/java
  head -c 5000 /dev/zero >/etc/ssl/certs/java/cacerts
  echo "E: Sub-process /usr/bin/dpkg returned an error code (1)" >&2
  exit 100
fi
