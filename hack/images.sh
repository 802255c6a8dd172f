#!/usr/bin/env bash
# The test bed's images and wheelhouse, made without Docker and without any public image:
#
#   hack/images.sh kaniko                     Kaniko executor from source, packaged like upstream's deploy/Dockerfile
#   hack/images.sh pause                      the pause image from Kubernetes' build/pause/linux/pause.c
#   hack/images.sh base                       Python base image from Debian packages (debootstrap)
#   hack/images.sh wheels                     wheelhouse for the Dockerfiles' offline pip (requirements/*.txt)
#   hack/images.sh all                        the four above
#   hack/images.sh push REGISTRY              push the images to REGISTRY (host:port, plain HTTP) as
#                                             REGISTRY/modelapp/{kaniko,pause,python}:TAG; print and write
#                                             <cache>/images/pushed.env (name=ref@sha256:digest)
#   hack/images.sh context DOCKERFILE OUTDIR  a Kaniko build context: the tracked files less .dockerignore,
#                                             plus the wheelhouse at wheels/
#   hack/images.sh dir NAME                   print the cache directory of an artifact (building it if needed)
#
# Every artifact lives in ${MODELAPP_CACHE:-~/.cache/modelapp}/images/<name>-<key>/, where <key> hashes the
# artifact's inputs (the recipe's own code, pinned versions, source sha256, package lists, the machine's CA
# bundle, the toolchain's version), so an unchanged artifact is reused and a changed input rebuilds it alone.
# An image's directory holds oci/ (an OCI image layout, what push pushes), image.tar (the same layout as one
# archive, for `ctr images import` or skopeo's oci-archive:), ref, digest, info and build.log.
# Needs crane (hack/build-tools.sh builds it into .local/bin), go, gcc, debootstrap, python3, tar.
# shellcheck disable=SC2317 # its functions run through "cmd_$1", "$builder" and trap, which it does not follow
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$repo/hack/versions.env"

KANIKO_VERSION=v1.28.3
KANIKO_COMMIT=e0092dbc17e6aad98efc244c88c2c6d11d5a829a
KANIKO_REPO=https://github.com/osscontainertools/kaniko
KANIKO_TARBALL_SHA256=a0f685c9e4ba356ec1a95418e5b6d99bacb7b582acede5bfb697e8263c6167d4
KANIKO_MODULE=github.com/osscontainertools/kaniko
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SECURITY_MIRROR=http://deb.debian.org/debian-security
BASE_PACKAGES=(ca-certificates passwd python3 python3-venv python3-pip python-is-python3)
# Every file of every image gets this mtime (reproducible layers; the cache key does not depend on it otherwise).
EPOCH=${SOURCE_DATE_EPOCH:-1704067200}
PLATFORM=linux/amd64
# The machine's CA bundle: image builds here must trust it (package registries are reached through it).
MACHINE_CA=${MODELAPP_MACHINE_CA:-/etc/ssl/certs/ca-certificates.crt}

cache_root=${MODELAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelapp}
images=$cache_root/images
mkdir -p "$images"
exec 3>&2
log() { printf '[images] %s\n' "$*" >&3; }
die() { log "error: $*"; exit 1; }
sha() { sha256sum "$@" | cut -d' ' -f1; }

crane=${CRANE:-$(command -v crane || echo "$repo/.local/bin/crane")}
[[ -x $crane ]] || crane="$repo/.local/bin/crane"
need_crane() { [[ -x $crane ]] || die "crane not found: run hack/build-tools.sh (make tools)"; }

# -- a scratch registry (crane's, in memory, on a free loopback port) to assemble images in -------------------
scratch=""
scratch_pid=""
cleanup() {
  if [[ -n $scratch_pid ]]; then kill "$scratch_pid" 2>/dev/null || true; fi
  return 0
}
trap cleanup EXIT
scratch_registry() {
  [[ -z $scratch ]] || return 0
  need_crane
  local logf; logf=$(mktemp "$images/.scratch-registry.XXXXXX")
  "$crane" registry serve --address 127.0.0.1:0 >"$logf" 2>&1 &
  scratch_pid=$!
  local port="" _
  for _ in $(seq 100); do
    port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$logf")
    [[ -n $port ]] && break
    sleep 0.1
  done
  rm -f "$logf"
  [[ -n $port ]] || die "crane registry serve did not start"
  scratch=127.0.0.1:$port
}

# -- image helpers -----------------------------------------------------------------------------------------------
# layer_tar ROOT OUT: a reproducible layer: sorted, one mtime, numeric owners as in ROOT (unless --root-owned).
layer_tar() {
  local owner=()
  if [[ $1 == --root-owned ]]; then owner=(--owner=0 --group=0); shift; fi
  local root=$1 out=$2
  # The root directory itself is an entry: without it the runtime makes the container's / 0700, and
  # nothing but root can resolve a path in it (the real node found this).
  chmod 755 "$root"
  (cd "$root" && find . | LC_ALL=C sort |
    tar --create --file "$out" --format=gnu --no-recursion --numeric-owner "${owner[@]}" --mtime="@$EPOCH" \
      --files-from -)
}

# oci_image OUT NAME TAG LAYER -- CRANE-MUTATE-ARGS...: an image of one layer on no base, its config set by
# crane mutate, pulled into OUT/oci (an OCI image layout) and archived as OUT/image.tar.
oci_image() {
  local out=$1 name=$2 tag=$3 layer=$4
  shift 5
  local ref=$scratch/build/$name
  "$crane" append --oci-empty-base -f "$layer" -t "$ref:layer"
  "$crane" mutate "$ref:layer" --set-platform "$PLATFORM" "$@" -t "$ref:$tag"
  "$crane" pull --format=oci "$ref:$tag" "$out/oci"
  "$crane" digest "$ref:$tag" >"$out/digest"
  # Name the image inside the layout (ctr images import and skopeo read these annotations).
  python3 - "$out/oci/index.json" "modelapp/$name:$tag" <<'PY'
import json, sys
path, name = sys.argv[1], sys.argv[2]
index = json.load(open(path))
for m in index["manifests"]:
    m.setdefault("annotations", {}).update(
        {"org.opencontainers.image.ref.name": name.rsplit(":", 1)[1], "io.containerd.image.name": name})
json.dump(index, open(path, "w"), separators=(",", ":"))
PY
  (cd "$out/oci" && tar --create --file "$out/image.tar" --format=gnu --sort=name --owner=0 --group=0 \
    --numeric-owner --mtime="@$EPOCH" oci-layout index.json blobs)
  echo "modelapp/$name:$tag" >"$out/ref"
  printf 'compressed_bytes=%s\n' "$(du -sb "$out/oci/blobs" | cut -f1)" >>"$out/info"
}

# layer_blob OUT: the path of the (only) layer's blob in OUT/oci.
layer_blob() {
  python3 - "$1/oci" <<'PY'
import json, sys
root = sys.argv[1]
index = json.load(open(f"{root}/index.json"))
algo, hexd = index["manifests"][0]["digest"].split(":")
manifest = json.load(open(f"{root}/blobs/{algo}/{hexd}"))
algo, hexd = manifest["layers"][-1]["digest"].split(":")
print(f"{root}/blobs/{algo}/{hexd}")
PY
}

# -- the cache ---------------------------------------------------------------------------------------------------
# ensure NAME KEY BUILDER: reuse images/NAME-KEY or build it with BUILDER OUTDIR (its output in build.log),
# then drop the other NAME-* directories. Sets $dir.
ensure() {
  local name=$1 key=$2 builder=$3
  dir=$images/$name-$key
  if [[ -f $dir/.done ]]; then
    log "$name: cached ($dir; built in $(cat "$dir/build-seconds")s)"
    return 0
  fi
  local lock
  exec {lock}>"$images/.$name.lock"
  flock "$lock"
  if [[ -f $dir/.done ]]; then
    exec {lock}>&-
    log "$name: cached ($dir)"
    return 0
  fi
  [[ $name == wheels ]] || scratch_registry
  # What a failed build of this artifact left (kept for its log until now).
  rm -rf "$images/.$name-"*.??????
  local tmp start=$SECONDS rc=0
  tmp=$(mktemp -d "$images/.$name-$key.XXXXXX")
  chmod 0755 "$tmp"
  log "$name: building (key $key; log $tmp/build.log)"
  set +e
  (set -e; "$builder" "$tmp") >"$tmp/build.log" 2>&1
  rc=$?
  set -e
  if ((rc != 0)); then
    tail -n 40 "$tmp/build.log" >&3
    exec {lock}>&-
    die "$name: build failed (rc $rc); log: $tmp/build.log"
  fi
  echo $((SECONDS - start)) >"$tmp/build-seconds"
  printf 'key=%s\n' "$key" >>"$tmp/info"
  rm -rf "$dir"
  touch "$tmp/.done"
  mv "$tmp" "$dir"
  local old
  for old in "$images/$name"-*; do
    [[ $old == "$dir" || ! -d $old ]] || rm -rf "$old"
  done
  ln -sfn "$name-$key" "$images/$name"
  exec {lock}>&-
  log "$name: built in $(cat "$dir/build-seconds")s ($dir)"
}

# key_of FUNCTION... -- INPUT...: the hash of the functions' code (declare -f) and the input strings.
key_of() {
  local fns=()
  while (($#)) && [[ $1 != -- ]]; do fns+=("$1"); shift; done
  shift
  { declare -f "${fns[@]}"; printf '%s\n' "$@"; } | sha256sum | cut -c1-16
}

# -- kaniko ------------------------------------------------------------------------------------------------------
kaniko_source() { # sets kaniko_kind, kaniko_src, kaniko_id
  local src=${MODELAPP_KANIKO_SOURCE:-}
  local shared=$repo/../shared/third_party/kaniko-$KANIKO_VERSION.tar.gz
  if [[ -z $src && -f $shared ]]; then
    src=$(cd "$(dirname "$shared")" && pwd)/$(basename "$shared")
    local got; got=$(sha "$src")
    [[ $got == "$KANIKO_TARBALL_SHA256" ]] || die "$src: sha256 $got, expected $KANIKO_TARBALL_SHA256"
  fi
  if [[ -z $src ]]; then
    kaniko_kind=git kaniko_src=$KANIKO_REPO kaniko_id="git $KANIKO_REPO $KANIKO_VERSION $KANIKO_COMMIT"
  elif [[ -d $src ]]; then
    kaniko_kind=dir kaniko_src=$(cd "$src" && pwd)
    kaniko_id="dir $(cd "$src" && find . -type f ! -path './.git/*' -print0 | LC_ALL=C sort -z |
      xargs -0 sha256sum | sha256sum | cut -c1-64)"
  elif [[ -f $src ]]; then
    kaniko_kind=tarball kaniko_src=$src kaniko_id="tarball $(sha "$src")"
  else
    die "MODELAPP_KANIKO_SOURCE=$src: no such file or directory"
  fi
}

# Offline, from the source's vendor/ tree, with this machine's Go (no toolchain download).
vendored_go() { GOFLAGS="-mod=vendor -buildvcs=false" GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 go "$@"; }

build_kaniko() {
  local out=$1 src=$1/src
  mkdir -p "$src"
  case $kaniko_kind in
    tarball) tar -xzf "$kaniko_src" -C "$src" ;;
    dir) src=$kaniko_src ;;
    git)
      git clone --quiet --depth 1 --branch "$KANIKO_VERSION" "$KANIKO_REPO" "$src"
      local head; head=$(git -C "$src" rev-parse HEAD)
      [[ $head == "$KANIKO_COMMIT" ]] || { echo "tag $KANIKO_VERSION is $head, expected $KANIKO_COMMIT"; exit 1; }
      ;;
  esac
  # A tarball made with a top-level directory: descend into it.
  if [[ ! -f $src/go.mod ]] && (($(find "$src" -mindepth 1 -maxdepth 1 | wc -l) == 1)); then
    src=$(find "$src" -mindepth 1 -maxdepth 1)
  fi
  grep -q "^module $KANIKO_MODULE\$" "$src/go.mod" || { echo "$src is not $KANIKO_MODULE"; exit 1; }
  grep -q '^var version = ' "$src/pkg/version/version.go" || { echo "no pkg/version.version in $src"; exit 1; }
  local bin=$out/bin start=$SECONDS
  mkdir -p "$bin"
  # What upstream's deploy/Dockerfile builds for its executor image (tini is a binary download there: left out).
  (cd "$src" && vendored_go build -trimpath -ldflags "-s -w -X $KANIKO_MODULE/pkg/version.version=$KANIKO_VERSION" \
    -o "$bin/executor" ./cmd/executor)
  echo "executor built in $((SECONDS - start))s"
  (cd "$src" &&
    vendored_go build -trimpath -ldflags "-s -w" -o "$bin/" github.com/GoogleCloudPlatform/docker-credential-gcr/v2 &&
    vendored_go build -trimpath -ldflags "-s -w" -o "$bin/" \
      github.com/awslabs/amazon-ecr-credential-helper/ecr-login/cli/docker-credential-ecr-login &&
    vendored_go build -trimpath -ldflags "-s -w" -o "$bin/docker-credential-acr-env" \
      github.com/osscontainertools/docker-credential-acr)
  echo "executor and credential helpers built in $((SECONDS - start))s"
  "$bin/executor" version | tee "$out/version"
  grep -q "$KANIKO_VERSION" "$out/version"

  local root=$out/root
  install -d -m 0777 "$root/kaniko"
  install -d -m 0755 "$root/kaniko/.docker" "$root/kaniko/ssl/certs" "$root/etc" "$root/workspace"
  install -m 0755 "$bin/executor" "$bin/docker-credential-gcr" "$bin/docker-credential-ecr-login" \
    "$bin/docker-credential-acr-env" "$root/kaniko/"
  install -m 0644 "$MACHINE_CA" "$root/kaniko/ssl/certs/ca-certificates.crt"
  install -m 0644 "$src/files/nsswitch.conf" "$root/etc/nsswitch.conf"
  layer_tar --root-owned "$root" "$out/layer.tar"
  printf 'uncompressed_bytes=%s\n' "$(stat -c %s "$out/layer.tar")" >>"$out/info"
  oci_image "$out" kaniko "$KANIKO_VERSION" "$out/layer.tar" -- \
    --entrypoint=/kaniko/executor --workdir=/workspace \
    -e HOME=/root -e USER=root -e PATH=/usr/local/bin:/kaniko -e SSL_CERT_DIR=/kaniko/ssl/certs \
    -e DOCKER_CONFIG=/kaniko/.docker/ \
    -e DOCKER_CREDENTIAL_GCR_CONFIG=/kaniko/.config/gcloud/docker_credential_gcr_config.json \
    -l "org.opencontainers.image.source=$KANIKO_REPO" -l "org.opencontainers.image.version=$KANIKO_VERSION" \
    -l "org.opencontainers.image.revision=$KANIKO_COMMIT"

  # The proof: the executor inside the image says its version.
  mkdir "$out/check"
  tar -xzf "$(layer_blob "$out")" -C "$out/check" ./kaniko/executor
  "$out/check/kaniko/executor" version | grep "$KANIKO_VERSION"
  rm -rf "$out/check" "$out/root" "$out/layer.tar" "$out/src"
}

cmd_kaniko() {
  kaniko_source
  local key
  key=$(key_of build_kaniko vendored_go layer_tar oci_image layer_blob -- "$kaniko_id" "$KANIKO_VERSION" "$EPOCH" \
    "$(go env GOVERSION)" "ca $(sha "$MACHINE_CA")")
  ensure kaniko "$key" build_kaniko
}

# -- pause -------------------------------------------------------------------------------------------------------
pause_source() { # sets pause_dir, pause_tag
  local modcache; modcache=$(go env GOMODCACHE)
  pause_dir=$modcache/k8s.io/kubernetes@$KUBE_VERSION/build/pause
  if [[ ! -f $pause_dir/linux/pause.c ]]; then
    log "pause: go mod download k8s.io/kubernetes@$KUBE_VERSION"
    (cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download "k8s.io/kubernetes@$KUBE_VERSION")
  fi
  [[ -f $pause_dir/linux/pause.c ]] || die "no $pause_dir/linux/pause.c"
  # The tag Kubernetes releases this pause.c as (build/pause/Makefile), which is also kubeadm's PauseVersion.
  pause_tag=$(sed -n 's/^TAG ?= *//p' "$pause_dir/Makefile")
  [[ -n $pause_tag ]] || die "no TAG in $pause_dir/Makefile"
}

build_pause() {
  local out=$1 root=$1/root
  mkdir -p "$root"
  # As build/pause/Makefile compiles it (CFLAGS), with the Kubernetes tag in place of `git describe`.
  gcc -Os -Wall -Werror -static -DVERSION="v$pause_tag-$KUBE_VERSION" -o "$out/pause" "$pause_dir/linux/pause.c"
  strip "$out/pause"
  "$out/pause" -v | tee "$out/version"
  install -m 0755 "$out/pause" "$root/pause"
  layer_tar --root-owned "$root" "$out/layer.tar"
  printf 'uncompressed_bytes=%s\n' "$(stat -c %s "$out/layer.tar")" >>"$out/info"
  oci_image "$out" pause "$pause_tag" "$out/layer.tar" -- --entrypoint=/pause --user=65535:65535
  rm -rf "$root" "$out/layer.tar" "$out/pause"
}

cmd_pause() {
  pause_source
  local key
  key=$(key_of build_pause layer_tar oci_image -- "$(sha "$pause_dir/linux/pause.c")" "$pause_tag" \
    "$KUBE_VERSION" "$EPOCH" "$(gcc --version | head -n1)" "$(dpkg-query -W -f '${Version}' libc6-dev 2>/dev/null)")
  ensure pause "$key" build_pause
}

# -- base: Python from Debian packages ---------------------------------------------------------------------------
base_suite() { # the suite of deb.debian.org/debian in the machine's sources
  local f=/etc/apt/sources.list.d/debian.sources
  if [[ -f $f ]]; then
    awk '/^URIs:/ {deb = ($2 ~ /\/debian\/?$/)} deb && /^Suites:/ {print $2; exit}' "$f"
  else
    awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $3; exit}' /etc/apt/sources.list
  fi
}

# machine_extra_cas BUNDLE DIR: the machine's CA certificates that BUNDLE lacks, one file each in DIR
# (update-ca-certificates then links each into /etc/ssl/certs by hash, as OpenSSL's CApath lookups want).
machine_extra_cas() {
  python3 - "$MACHINE_CA" "$1" "$2" <<'PY'
import re, sys
pem = re.compile(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----")
def certs(path):
    return {"".join(c.split()): c for c in pem.findall(open(path).read())}
machine, image = certs(sys.argv[1]), certs(sys.argv[2])
extra = [c for k, c in machine.items() if k not in image]
for n, cert in enumerate(extra):
    with open(f"{sys.argv[3]}/modelapp-machine-{n:03d}.crt", "w") as f:
        f.write(cert + "\n")
print(f"adding {len(extra)} of the machine's {len(machine)} CAs")
PY
}

build_base() {
  local out=$1 root=$1/root
  in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
  local start=$SECONDS
  debootstrap --variant=minbase --components=main --include="$(IFS=,; echo "${BASE_PACKAGES[*]}")" \
    "$base_suite" "$root" "$DEBIAN_MIRROR"
  echo "debootstrap done in $((SECONDS - start))s"

  # Keep later package installs small too, like Debian's slim images.
  cat >"$root/etc/dpkg/dpkg.cfg.d/modelapp-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  cat >"$root/etc/apt/apt.conf.d/modelapp-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $base_suite $base_suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY_MIRROR
Suites: $base_suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # The point releases' and security updates (debootstrap takes the suite as released).
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  in_root apt-get update -qq
  in_root apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade
  in_root apt-get -y -qq autoremove --purge
  echo "updates done in $((SECONDS - start))s"

  # The machine's CAs that Debian's bundle lacks, through update-ca-certificates like any local CA.
  machine_extra_cas "$root/etc/ssl/certs/ca-certificates.crt" "$root/usr/local/share/ca-certificates"
  in_root update-ca-certificates

  # Checks, while the root is still whole.
  in_root python3 --version | tee "$out/version"
  in_root python --version
  in_root python3 -m venv /tmp/venv-check
  in_root /tmp/venv-check/bin/python -m pip --version
  in_root python3 -c 'import ssl; ssl.create_default_context(cafile="/etc/ssl/certs/ca-certificates.crt")'
  in_root getent passwd root >/dev/null
  in_root sh -c 'command -v useradd groupadd'
  python_version=$(sed -n 's/^Python \([0-9]*\.[0-9]*\).*/\1/p' "$out/version")
  [[ -n $python_version ]]
  # shellcheck disable=SC2016 # dpkg-query's format
  in_root dpkg-query -W -f '${Package}=${Version}\n' >"$out/packages"

  # Slim: no package lists, caches, logs, docs (copyright files stay), man pages, locales.
  rm -rf "$root/tmp/venv-check" "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/lib/dpkg/*-old "$root"/var/cache/ldconfig/aux-cache "$root"/root/.cache "$root"/tmp/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian/* "$root"/var/log/*.log \
    "$root"/var/log/apt/* "$root"/var/log/alternatives.log "$root"/var/log/bootstrap.log
  find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  # The runtime provides /dev, /proc, /sys and the network files.
  find "$root/dev" "$root/proc" "$root/sys" -mindepth 1 -delete 2>/dev/null || true
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  # Reproducible: one mtime everywhere, password ages from it, bytecode compiled against it.
  sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$((EPOCH / 86400)):/" "$root/etc/shadow"
  find "$root" -name __pycache__ -type d -prune -exec rm -rf {} +
  find "$root" -newermt "@$EPOCH" -exec touch --no-dereference --date="@$EPOCH" {} +
  in_root env PYTHONHASHSEED=0 python3 -m compileall -q --invalidation-mode timestamp \
    "/usr/lib/python$python_version" /usr/lib/python3/dist-packages >/dev/null
  echo "slimmed in $((SECONDS - start))s"

  printf 'python=%s\nsuite=%s\nrootfs_bytes=%s\n' "$(cat "$out/version")" "$base_suite" \
    "$(du -sb "$root" | cut -f1)" >>"$out/info"
  layer_tar "$root" "$out/layer.tar"
  printf 'uncompressed_bytes=%s\n' "$(stat -c %s "$out/layer.tar")" >>"$out/info"
  oci_image "$out" python "$python_version-$base_suite" "$out/layer.tar" -- --cmd=python3 \
    -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin -e LANG=C.UTF-8 \
    -e SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt -e PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    -l org.opencontainers.image.description="Python $python_version from Debian $base_suite packages (hack/images.sh base)"
  rm -rf "$root" "$out/layer.tar"
}

cmd_base() {
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  base_suite=$(base_suite)
  [[ -n $base_suite ]] || die "no Debian suite in the machine's apt sources"
  local key
  key=$(key_of build_base machine_extra_cas layer_tar oci_image -- "$base_suite" "$DEBIAN_MIRROR" \
    "$DEBIAN_SECURITY_MIRROR" "${BASE_PACKAGES[*]}" "$EPOCH" "ca $(sha "$MACHINE_CA")" \
    "$(dpkg-query -W -f '${Version}' debootstrap)")
  ensure base "$key" build_base
}

# -- wheels ------------------------------------------------------------------------------------------------------
WHEEL_REQUIREMENTS=(requirements/scorer.txt requirements/operator.txt requirements/build.txt)
wheel_platforms() { # pip 23 takes manylinux_2_X literally: every glibc the images' 2.36 runs
  local x
  for x in $(seq 36 -1 17); do printf -- '--platform=manylinux_2_%s_x86_64\n' "$x"; done
  printf -- '--platform=%s\n' manylinux2014_x86_64 manylinux2010_x86_64 manylinux1_x86_64 linux_x86_64
}

build_wheels() {
  local out=$1 r platforms
  mapfile -t platforms < <(wheel_platforms)
  mkdir -p "$out/wheels"
  for r in "${WHEEL_REQUIREMENTS[@]}"; do
    # The machine's pip, its configuration (its CA) but not its extra find-links.
    env -u PIP_FIND_LINKS python3 -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
      --python-version=3.11 --implementation=cp --abi=cp311 "${platforms[@]}" \
      --dest "$out/wheels" -r "$repo/$r"
  done
  (cd "$out/wheels" && sha256sum -- * >../SHA256SUMS)
  printf 'wheels=%s\nbytes=%s\n' "$(find "$out/wheels" -name '*.whl' | wc -l)" "$(du -sb "$out/wheels" | cut -f1)" \
    >>"$out/info"
}

cmd_wheels() {
  local r ins=()
  for r in "${WHEEL_REQUIREMENTS[@]}"; do
    [[ -f $repo/$r ]] || die "$r is missing (hack/check-requirements.sh --fix writes it)"
    ins+=("$r $(sha "$repo/$r")")
  done
  local key
  key=$(key_of build_wheels wheel_platforms -- "uv.lock $(sha "$repo/uv.lock")" "${ins[@]}")
  ensure wheels "$key" build_wheels
}

# -- push --------------------------------------------------------------------------------------------------------
cmd_push() {
  local registry=${1:?usage: images.sh push REGISTRY (host:port)}
  need_crane
  local lines=() name src ref digest remote
  for name in kaniko pause base; do
    "cmd_$name"
    src=$dir
    ref=$registry/$(cat "$src/ref")
    digest=$(cat "$src/digest")
    remote=$("$crane" digest --insecure "$ref" 2>/dev/null || true)
    if [[ $remote == "$digest" ]]; then
      log "$ref: the registry holds $digest already"
    else
      local start=$SECONDS
      "$crane" push --insecure "$src/oci" "$ref" >/dev/null
      remote=$("$crane" digest --insecure "$ref")
      [[ $remote == "$digest" ]] || die "$ref: pushed $digest, the registry says $remote"
      log "$ref: pushed in $((SECONDS - start))s"
    fi
    [[ $name == base ]] && name=python
    lines+=("$name=$ref@$digest")
  done
  printf '%s\n' "# hack/images.sh push $registry" "registry=$registry" "${lines[@]}" >"$images/pushed.env.tmp"
  mv "$images/pushed.env.tmp" "$images/pushed.env"
  printf '%s\n' "${lines[@]}"
  log "wrote $images/pushed.env"
}

# -- context -----------------------------------------------------------------------------------------------------
# Prints the tracked files (NUL-separated) that a build with DOCKERFILE gets: .dockerignore (or
# DOCKERFILE.dockerignore, as BuildKit prefers) applied with Docker's rules (patternmatcher: ** for any
# number of directories, a match on a parent directory excludes what is under it, later ! patterns re-include).
context_files() {
  local dockerfile=$1 ignore=$repo/.dockerignore
  [[ -f $repo/$dockerfile.dockerignore ]] && ignore=$repo/$dockerfile.dockerignore
  git -C "$repo" ls-files -z | python3 -c '
import os, re, sys
ignore, dockerfile, repo = sys.argv[1], sys.argv[2], sys.argv[3]
def regex(p):
    out, i = "^", 0
    while i < len(p):
        c = p[i]
        if c == "*":
            if p[i + 1 : i + 2] == "*":
                i += 1
                if p[i + 1 : i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(p) else "(.*/)?"
            else:
                out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = p.find("]", i)
            out += p[i : j + 1] if j > 0 else re.escape(c)
            i = j if j > 0 else i
        elif c == "\\" and i + 1 < len(p):
            i += 1
            out += re.escape(p[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + "$")
rules = []
for line in open(ignore) if os.path.exists(ignore) else []:
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    neg = line.startswith("!")
    pat = os.path.normpath(line[1:].strip() if neg else line).lstrip("/")
    rules.append((neg, regex(pat)))
def excluded(path):
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    out = False
    for neg, rx in rules:
        if any(rx.match(c) for c in candidates):
            out = not neg
    return out
for path in sys.stdin.read().split("\0"):
    if path and os.path.lexists(os.path.join(repo, path)) and (path == dockerfile or not excluded(path)):
        sys.stdout.write(path + "\0")
' "$ignore" "$dockerfile" "$repo"
}

cmd_context() {
  local dockerfile=${1:?usage: images.sh context DOCKERFILE OUTDIR} outdir=${2:?usage: images.sh context DOCKERFILE OUTDIR}
  dockerfile=${dockerfile#"$repo"/}
  [[ -f $repo/$dockerfile ]] || die "no $dockerfile in $repo"
  cmd_wheels
  local wheels=$dir/wheels start=$SECONDS
  if [[ -e $outdir ]]; then
    [[ -f $outdir/.modelapp-context || -z $(ls -A "$outdir") ]] || die "$outdir is not empty and not a context this made"
    rm -rf "$outdir"
  fi
  mkdir -p "$outdir"
  (cd "$repo" && context_files "$dockerfile" | xargs -0 --no-run-if-empty cp --parents --no-dereference \
    --preserve=mode,links -t "$outdir")
  mkdir "$outdir/wheels"
  cp --link "$wheels"/* "$outdir/wheels/" 2>/dev/null || cp "$wheels"/* "$outdir/wheels/"
  # Content only (no revision, no time): a context's hash changes with what it holds.
  printf 'dockerfile=%s\nwheels=%s\n' "$dockerfile" "$(basename "$(dirname "$wheels")")" >"$outdir/.modelapp-context"
  log "context $outdir: $(find "$outdir" -type f -not -path "$outdir/wheels/*" | wc -l) files and" \
    "$(find "$outdir/wheels" -name '*.whl' | wc -l) wheels ($(du -sh "$outdir" | cut -f1)) in $((SECONDS - start))s"
  log "kaniko: --context=dir://$outdir --dockerfile=$dockerfile --build-arg=PIP_WHEELS=wheels" \
    "--build-arg=PYTHON_IMAGE=<registry>/modelapp/python:<tag from pushed.env>"
}

cmd_dir() {
  local name=${1:?usage: images.sh dir kaniko|pause|base|wheels}
  case $name in kaniko | pause | base | wheels) "cmd_$name" ;; *) die "no artifact $name" ;; esac
  echo "$dir"
}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# All in one function, called on the last line: bash has read the whole file before anything runs, so
# editing the script while it runs cannot change what it does.
main() {
  local total=$SECONDS a
  case ${1:-} in
    kaniko | pause | base | wheels) "cmd_$1"; echo "$dir" ;;
    all) for a in kaniko pause base wheels; do "cmd_$a"; done ;;
    push) shift; cmd_push "$@" ;;
    context) shift; cmd_context "$@" ;;
    dir) shift; cmd_dir "$@" ;;
    -h | --help | help) usage; return 0 ;;
    *) usage >&2; return 2 ;;
  esac
  log "done in $((SECONDS - total))s"
}

main "$@"; exit
