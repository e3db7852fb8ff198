# shellcheck shell=bash
# dpkg-query -W -f '${db:Status-Abbrev} ${Version}' PACKAGE, as dpkg-query(1) prints it: for a package in
# $STUB_INSTALLED ("name=version" words; the release's packages as "name=any") "ii " (wanted install,
# installed) or, for one in $STUB_HELD, "hi " (held, as apt-mark hold leaves the agents), then the
# format's own space and the version; any other package as one dpkg does not know: exit 1.
package=${!#}
for installed in ${STUB_INSTALLED:-}; do
  if [[ "${installed%%=*}" == "$package" ]]; then
    wanted=i
    [[ " ${STUB_HELD:-} " != *" $package "* ]] || wanted=h
    printf '%si  %s' "$wanted" "${installed#*=}"
    exit 0
  fi
done
echo "dpkg-query: no packages found matching $package" >&2
exit 1
