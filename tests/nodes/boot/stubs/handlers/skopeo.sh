# shellcheck shell=bash
# skopeo copy --quiet docker://SOURCE docker-archive:PATH:REFERENCE: a stand-in archive at PATH naming
# REFERENCE (what docker.sh loads). Like skopeo, it writes no archive over a non-empty file. With
# STUB_SKOPEO_BREAK_ONCE set, the first copy fails halfway, leaving part of an archive, as a dropped
# connection does.
if [[ "$1" == copy ]]; then
  destination=${!#}
  destination=${destination#docker-archive:}
  path=${destination%%:*}
  [[ ! -s "$path" ]] || { echo "docker-archive doesn't support modifying existing images" >&2; exit 1; }
  if [[ -n "${STUB_SKOPEO_BREAK_ONCE:-}" && ! -e "$STUB_STATE/skopeo-broke" ]]; then
    : >"$STUB_STATE/skopeo-broke"
    echo "partial" >"$path"
    echo "reading blob: unexpected EOF" >&2
    exit 1
  fi
  echo "${destination#*:}" >"$path"
fi
