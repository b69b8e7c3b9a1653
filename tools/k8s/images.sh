#!/usr/bin/env bash
# Container images without Docker, for the node (tools/k8s/node.sh) and the chart:
#
#   tools/k8s/images.sh build [NAME...]   # every image (or these: api email whatsapp sandbox operator kafka postgres
#                                         # keda)
#   tools/k8s/images.sh cached            # exit 0 when the bases and third-party images are built already
#   tools/k8s/images.sh list              # what is built, with sizes
#
# - One debootstrap of Debian bookworm (minbase), kept in the machine's cache, that every base derives from; each
#   base is a copy with its Debian packages installed by apt in a chroot, committed with buildah:
#   - the stand-in for the Dockerfile's FROM (python3.11 + venv, tagged docker.io/library/python:3.11.13-slim-
#     bookworm), so that `buildah bud --pull=never` builds the Dockerfile unchanged. It is Debian's python 3.11.2 in
#     /usr/bin, not 3.11.13 in /usr/local;
#   - a JRE base for Kafka and a PostgreSQL 15 base.
# - Each deployable (api, email, whatsapp, sandbox, operator) from the one Dockerfile (--build-arg DEPLOYABLE),
#   tagged localhost/notify-<deployable>:$IMAGE_TAG. pip inside the build gets the machine's CA bundle and pip
#   configuration mounted read-only for that step only: nothing of this machine is copied into an image.
# - The chart's embedded Kafka and PostgreSQL under the chart's default tags (apache/kafka:4.4.0 and
#   postgres:15-bookworm), from tools/k8s/images/{kafka,postgres}: Maven Central's Kafka jars and Debian's
#   postgresql-15, each with an entrypoint of ours that honours the environment the chart sets.
# - KEDA's operator and metrics adapter, each binary built by tools/k8s/build.sh alone in an image.
# - The pod sandbox image (localhost/pause:$IMAGE_TAG): tools/k8s/pause, a static Go program.
# Each image is exported as a docker archive, .local/images/<name>.tar, for `ctr images import`.
#
# Settings (environment): IMAGE_TAG (dev), DEBIAN_MIRROR (the first deb.debian.org-style URI apt uses),
# NOTIFY_CACHE (~/.cache/notify: buildah's storage and the debootstrap, shared by the clones of this machine).
set -euo pipefail
COMPONENT=images
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/common.sh"
# shellcheck source=tools/k8s/versions.env
. "$HERE/versions.env"

IMAGES="$LOCAL/images"
# buildah's storage and the debootstrap are kept in the machine's cache (as tools/k8s/build.sh keeps its binaries):
# a fresh clone on the same machine reuses the bases and every cached layer, and rebuilds only what its code changes.
CACHE="${NOTIFY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/notify}"
TAG="${IMAGE_TAG:-dev}"
DEPLOYABLES=(api email whatsapp sandbox operator)
B=(buildah --root "$CACHE/containers/storage" --runroot "$CACHE/containers/run" --storage-driver overlay)
mkdir -p "$IMAGES" "$CACHE"

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

# exported REF NAME: true when REF is built already (from the machine's cache); its archive is then written if this
# checkout has none yet, so that a fresh clone imports every image without building it again.
exported() {
  has_image "$1" || return 1
  [[ -f $IMAGES/$2.tar ]] || export_image "$1" "$2"
  log "$1 already built (skip)"
}

# The one debootstrap (minbase + CA certificates), kept as the cache every base image derives from.
ROOTFS="$CACHE/rootfs-bookworm"

debootstrap_once() {
  [[ -f $ROOTFS/.complete ]] && return
  local t0=$SECONDS
  rm -rf "$ROOTFS"
  log "debootstrap bookworm (minbase) from $(debian_mirror): a few minutes, network-bound"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$ROOTFS" "$(debian_mirror)" \
    >>"$LOG_DIR/$COMPONENT.log" 2>&1 || die "debootstrap failed"
  touch "$ROOTFS/.complete"
  log "debootstrap done in $((SECONDS - t0)) s"
}

# derive_base TAG SETUP PACKAGE...: a copy of the rootfs, SETUP (shell, in the chroot) then PACKAGE... installed
# with apt, slimmed, committed as the image TAG. The chroot gets the host's resolver and /proc for the install
# only; neither is in the image.
derive_base() {
  local tag="$1" setup="$2" t0=$SECONDS dir ctx; shift 2
  if has_image "$tag"; then log "base $tag already built (skip)"; return; fi
  debootstrap_once
  dir="$IMAGES/derive" ctx="$IMAGES/derive-context"
  rm -rf "$dir" "$ctx" && mkdir -p "$ctx"
  cp -a "$ROOTFS" "$dir" && rm -f "$dir/.complete"
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  # no daemon starts inside the chroot (postgresql's postinst would try)
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d" && chmod +x "$dir/usr/sbin/policy-rc.d"
  mount -t proc proc "$dir/proc"
  log "base $tag: apt-get install $*"
  if ! chroot "$dir" /bin/sh -ec "$setup
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $*
    apt-get clean" >>"$LOG_DIR/$COMPONENT.log" 2>&1; then
    umount "$dir/proc"; die "installing $* into $tag failed"
  fi
  umount "$dir/proc"
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/* \
    "$dir"/usr/share/locale/* "$dir/usr/sbin/policy-rc.d" "$dir/etc/resolv.conf"
  : >"$dir/etc/resolv.conf"
  tar -C "$dir" --numeric-owner -cf "$ctx/rootfs.tar" .
  rm -rf "$dir"
  printf 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["/bin/sh"]\n' >"$ctx/Containerfile"
  "${B[@]}" bud --isolation chroot --quiet -t "$tag" -f "$ctx/Containerfile" "$ctx" >>"$LOG_DIR/$COMPONENT.log" 2>&1 ||
    die "committing the base image $tag failed"
  rm -rf "$ctx"
  log "base $tag built in $((SECONDS - t0)) s"
}

# The stand-in for python:3.11.13-slim-bookworm: Debian's python 3.11 with venv, `python` on PATH.
build_python_base() { derive_base "$(base_tag)" : python3.11-minimal python3.11-venv python-is-python3; }

# The chart's embedded Kafka and PostgreSQL (charts/notify/values.yaml: kafka.embedded.image,
# postgresql.embedded.image), built here under the tags the chart defaults to, from Debian packages and Maven
# Central's Kafka jars (scripts/kafka.sh fetches them). tests/chart checks that these tags match the chart's.
KAFKA_IMAGE_VERSION=4.4.0
KAFKA_IMAGE="docker.io/apache/kafka:$KAFKA_IMAGE_VERSION"
POSTGRES_IMAGE="docker.io/library/postgres:15-bookworm"
JRE_BASE="localhost/notify-base-jre:$TAG"
POSTGRES_BASE="localhost/notify-base-postgres:$TAG"

build_kafka() {
  local ctx="$IMAGES/kafka-context" libs t0=$SECONDS
  exported "$KAFKA_IMAGE" kafka && return
  derive_base "$JRE_BASE" : openjdk-17-jre-headless
  KAFKA_VERSION="$KAFKA_IMAGE_VERSION" "$ROOT/scripts/kafka.sh" install >>"$LOG_DIR/$COMPONENT.log" 2>&1 ||
    die "fetching the Kafka jars failed"
  libs="$LOCAL/kafka/libs-$KAFKA_IMAGE_VERSION"
  rm -rf "$ctx" && mkdir -p "$ctx" && cp -a "$libs" "$ctx/libs" && rm -f "$ctx/libs/.complete"
  cp "$HERE/images/kafka/"* "$ctx/"
  "${B[@]}" bud --isolation chroot --pull=never --quiet --build-arg "BASE=$JRE_BASE" -t "$KAFKA_IMAGE" \
    -f "$ctx/Containerfile" "$ctx" >>"$LOG_DIR/$COMPONENT.log" 2>&1 || die "building $KAFKA_IMAGE failed"
  rm -rf "$ctx"
  export_image "$KAFKA_IMAGE" kafka
  log "$KAFKA_IMAGE built and exported in $((SECONDS - t0)) s"
}

build_postgres() {
  local t0=$SECONDS
  exported "$POSTGRES_IMAGE" postgres && return
  # the official image's numeric user (999), made before the package so that the package reuses it
  derive_base "$POSTGRES_BASE" \
    "groupadd --system --gid 999 postgres && useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /bin/bash postgres" \
    postgresql-15
  "${B[@]}" bud --isolation chroot --pull=never --quiet --build-arg "BASE=$POSTGRES_BASE" -t "$POSTGRES_IMAGE" \
    -f "$HERE/images/postgres/Containerfile" "$HERE/images/postgres" >>"$LOG_DIR/$COMPONENT.log" 2>&1 ||
    die "building $POSTGRES_IMAGE failed"
  export_image "$POSTGRES_IMAGE" postgres
  log "$POSTGRES_IMAGE built and exported in $((SECONDS - t0)) s"
}

# KEDA's operator and metrics adapter (tools/k8s/build.sh keda-operator keda-adapter): each static binary alone in
# an image, at the path and numeric user of KEDA's own images, under the names tools/k8s/keda.sh installs.
build_keda() {
  local tool ref ctr
  "$HERE/build.sh" keda-operator keda-adapter >>"$LOG_DIR/$COMPONENT.log" 2>&1 || die "building KEDA failed"
  for tool in keda-operator keda-adapter; do
    ref="localhost/$tool:$KEDA_VERSION"
    exported "$ref" "$tool" && continue
    ctr="$("${B[@]}" from scratch)"
    "${B[@]}" copy "$ctr" "$LOCAL/bin/$tool" "/${tool/-operator/}" >/dev/null
    "${B[@]}" config --user 65532:65532 "$ctr"
    "${B[@]}" commit --quiet "$ctr" "$ref" >/dev/null
    "${B[@]}" rm "$ctr" >/dev/null
    export_image "$ref" "$tool"
    log "$ref built and exported"
  done
}

build_pause() {
  local ref="localhost/pause:$TAG" ctr
  exported "$ref" pause && return
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
    names=("$@")
    ((${#names[@]})) || names=("${DEPLOYABLES[@]}" kafka postgres keda)
    build_pause
    for n in "${names[@]}"; do
      case "$n" in
        kafka) build_kafka ;;
        postgres) build_postgres ;;
        keda) build_keda ;;
        *) build_python_base && build_deployable "$n" ;;
      esac
    done
    ;;
  cached)
    # exit 0 when the bases and the third-party images are built (what makes `build` take minutes, not more)
    command -v buildah >/dev/null || exit 1
    for ref in "$(base_tag)" "$KAFKA_IMAGE" "$POSTGRES_IMAGE" "localhost/pause:$TAG" \
      "localhost/keda-operator:$KEDA_VERSION" "localhost/keda-adapter:$KEDA_VERSION"; do
      has_image "$ref" || exit 1
    done
    ;;
  list)
    "${B[@]}" images
    ls -l "$IMAGES"/*.tar 2>/dev/null || true
    ;;
  *) echo "usage: $0 build [NAME...] | cached | list" >&2; exit 2 ;;
esac
