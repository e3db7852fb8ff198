# shellcheck shell=bash
# dpkg-query -W -f FORMAT PACKAGE, FORMAT's ${db:Status-Abbrev} and ${Version} filled in as dpkg-query(1)
# prints them: for a package in $STUB_INSTALLED ("name=version" words; the release's packages as
# "name=any") "ii " (wanted install, installed) or, for one in $STUB_HELD, "hi " (held, as apt-mark hold
# leaves the agents); for one in $STUB_UNCONFIGURED ("name=state" words, e.g. ca-certificates-java=iF:
# half-configured) that state; any other package as one dpkg does not know: exit 1.
format=$3 package=${!#}
# shellcheck disable=SC2016 # dpkg-query's field names, literally
answer() {
  local out=${format//'${db:Status-Abbrev}'/$1}
  printf '%s' "${out//'${Version}'/$2}"
  exit 0
}
for unconfigured in ${STUB_UNCONFIGURED:-}; do
  [[ "${unconfigured%%=*}" != "$package" ]] || answer "${unconfigured#*=} " any
done
for installed in ${STUB_INSTALLED:-}; do
  if [[ "${installed%%=*}" == "$package" ]]; then
    wanted=i
    [[ " ${STUB_HELD:-} " != *" $package "* ]] || wanted=h
    answer "${wanted}i " "${installed#*=}"
  fi
done
echo "dpkg-query: no packages found matching $package" >&2
exit 1
