#!/usr/bin/env bash
# Container images without Docker, for the node (tools/k8s/node.sh) and the chart:
#
#   tools/k8s/images.sh build [DEPLOYABLE...]   # base and pause images (once), then each deployable's image
#   tools/k8s/images.sh list                    # what is built, with sizes
#
# - The base: Debian bookworm by debootstrap (minbase) with python3.11 and its venv module, committed with buildah
#   under the tag the Dockerfile's FROM names, so that `buildah bud --pull=never` builds the Dockerfile unchanged.
#   It stands in for python:3.11.13-slim-bookworm: Debian's python 3.11.2 in /usr/bin, not 3.11.13 in /usr/local.
# - Each deployable (api, email, whatsapp, sandbox, operator) from the one Dockerfile (--build-arg DEPLOYABLE),
#   tagged localhost/notify-<deployable>:$IMAGE_TAG. pip inside the build gets the machine's CA bundle and pip
#   configuration mounted read-only for that step only: nothing of this machine is copied into an image.
# - The pod sandbox image (localhost/pause:$IMAGE_TAG): tools/k8s/pause, a static Go program.
# Each image is exported as a docker archive, .local/images/<name>.tar, for `ctr images import`.
#
# Settings (environment): IMAGE_TAG (dev), DEBIAN_MIRROR (the first deb.debian.org-style URI apt uses).
set -euo pipefail
COMPONENT=images
# shellcheck source=scripts/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/common.sh"

IMAGES="$LOCAL/images"
TAG="${IMAGE_TAG:-dev}"
DEPLOYABLES=(api email whatsapp sandbox operator)
B=(buildah --root "$IMAGES/storage" --runroot "$IMAGES/run" --storage-driver overlay)
mkdir -p "$IMAGES"

debian_mirror() {
  [[ -n ${DEBIAN_MIRROR:-} ]] && { echo "$DEBIAN_MIRROR"; return; }
  cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
    sed -n -e 's/^URIs: *\([^ ]*debian\)$/\1/p' -e 's/^deb \(http[^ ]*debian\) .*/\1/p' | head -n1
}

# The tag of the Dockerfile's base image, as containers-storage names it (docker.io/library/python:…).
base_tag() {
  local from
  from="$(sed -n 's/^FROM \(python:[^ ]*\) AS .*/\1/p' "$ROOT/Dockerfile" | sort -u)"
  [[ $(wc -l <<<"$from") == 1 && -n $from ]] || die "the Dockerfile's stages do not share one python base: $from"
  echo "docker.io/library/$from"
}

has_image() { "${B[@]}" images --quiet "$1" >/dev/null 2>&1; }

build_base() {
  local tag rootfs ctx t0=$SECONDS
  tag="$(base_tag)"
  if has_image "$tag"; then log "base $tag already built (skip)"; return; fi
  rootfs="$IMAGES/rootfs"
  ctx="$IMAGES/base-context"
  rm -rf "$rootfs" "$ctx" && mkdir -p "$ctx"
  log "debootstrap bookworm (minbase + python3.11, venv) from $(debian_mirror): a few minutes, network-bound"
  debootstrap --variant=minbase --include=python3.11-minimal,python3.11-venv,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$(debian_mirror)" >>"$LOG_DIR/$COMPONENT.log" 2>&1 || die "debootstrap failed"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" --numeric-owner -cf "$ctx/rootfs.tar" .
  rm -rf "$rootfs"
  printf 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["python3"]\n' >"$ctx/Containerfile"
  "${B[@]}" bud --isolation chroot --quiet -t "$tag" -f "$ctx/Containerfile" "$ctx" >>"$LOG_DIR/$COMPONENT.log" 2>&1 ||
    die "committing the base image failed"
  rm -rf "$ctx"
  log "base $tag built in $((SECONDS - t0)) s"
}

build_pause() {
  local ref="localhost/pause:$TAG" ctr
  if has_image "$ref"; then log "$ref already built (skip)"; return; fi
  (cd "$ROOT/tools/k8s/pause" && CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOTOOLCHAIN=local \
    go build -ldflags "-s -w" -o "$IMAGES/pause" .)
  ctr="$("${B[@]}" from scratch)"
  "${B[@]}" copy "$ctr" "$IMAGES/pause" /pause >/dev/null
  "${B[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  "${B[@]}" commit --quiet "$ctr" "$ref" >/dev/null
  "${B[@]}" rm "$ctr" >/dev/null
  export_image "$ref" pause
}

# The host's trust and pip settings, for pip inside a build step only (read-only mounts, never in a layer).
build_mounts() {
  local f
  for f in /etc/ssl/certs/ca-certificates.crt /etc/pip.conf; do
    [[ -f $f ]] && printf -- '-v\n%s:%s:ro\n' "$f" "$f"
  done
}

build_deployable() {
  local name="$1" ref="localhost/notify-$1:$TAG" t0=$SECONDS mounts
  mapfile -t mounts < <(build_mounts)
  log "building $ref from the Dockerfile"
  "${B[@]}" bud --isolation chroot --pull=never --layers "${mounts[@]}" --build-arg "DEPLOYABLE=$name" \
    -t "$ref" -f "$ROOT/Dockerfile" "$ROOT" >>"$LOG_DIR/$COMPONENT.log" 2>&1 || die "building $ref failed"
  export_image "$ref" "notify-$name"
  log "$ref built and exported in $((SECONDS - t0)) s"
}

export_image() {
  local ref="$1" name="$2"
  rm -f "$IMAGES/$name.tar"
  "${B[@]}" push --quiet "$ref" "docker-archive:$IMAGES/$name.tar:$ref" >>"$LOG_DIR/$COMPONENT.log" 2>&1 ||
    die "exporting $ref failed"
}

case "${1:-build}" in
  build)
    shift || true
    [[ $(id -u) == 0 ]] || die "building images here needs root (buildah's overlay storage, debootstrap)"
    ensure_packages buildah debootstrap
    build_base
    build_pause
    names=("$@")
    ((${#names[@]})) || names=("${DEPLOYABLES[@]}")
    for n in "${names[@]}"; do build_deployable "$n"; done
    ;;
  list)
    "${B[@]}" images
    ls -l "$IMAGES"/*.tar 2>/dev/null || true
    ;;
  *) echo "usage: $0 build [DEPLOYABLE...] | list" >&2; exit 2 ;;
esac
