# shellcheck shell=bash
# docker: the images Docker holds are the lines of $STUB_STATE/docker-images (seeded by a test as
# $STUB_DOCKER_IMAGES, words). `docker load --quiet --input FILE` adds the references FILE names (the
# stand-in archive skopeo.sh writes: one reference per line); `docker image inspect REF` answers for
# those alone, as Docker does: exit 1 with "No such image" for any other.
images="$STUB_STATE/docker-images"
if [[ ! -e "$images" ]]; then
  read -ra seeded <<<"${STUB_DOCKER_IMAGES:-}"
  { ((${#seeded[@]} == 0)) || printf '%s\n' "${seeded[@]}"; } >"$images"
fi
case "$1 $2" in
  "image inspect")
    grep -Fxq -- "${!#}" "$images" || { echo "Error: No such image: ${!#}" >&2; exit 1; } ;;
  "load --quiet")
    cat "${!#}" >>"$images" ;;
esac
