#!/usr/bin/env bash
# Builds the test bed's binaries from source (Go module proxy) and installs Azurite (npm)
# into a cache outside the repo, then links them into .local/bin. Already-built tools are
# skipped, so a warm run takes well under a second.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$repo/hack/versions.env"

cache_root=${MODELAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelapp}
stamp="k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_azurite-${AZURITE_VERSION}"
cache="$cache_root/$stamp"
bin="$cache/bin"
mkdir -p "$bin" "$repo/.local/bin"

log() { printf '[build-tools] %s\n' "$*" >&2; }

# Each module gets its own tool cache key: the hash of its go.mod and go.sum, so editing
# one module rebuilds only that one.
mod_key() { cat "$repo/hack/tools/$1/go.mod" "$repo/hack/tools/$1/go.sum" | sha256sum | cut -c1-12; }

build_go() { # module-dir output-name package [ldflags] [build-tags]
  local dir=$1 name=$2 pkg=$3 ldflags=${4:-} tags=${5:-}
  local key; key=$(mod_key "$dir")${tags:+_$tags}
  local out="$bin/$name"
  if [[ -x "$out" && -f "$out.key" && "$(cat "$out.key")" == "$key" ]]; then
    return 0
  fi
  log "building $name ($pkg)"
  local start=$SECONDS
  (cd "$repo/hack/tools/$dir" &&
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo "$key" > "$out.key"
  log "built $name in $((SECONDS - start))s"
}

kube_ldflags() {
  local v=${KUBE_VERSION#v} pkg=k8s.io/component-base/version
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*}
  # The same variables the upstream release build stamps (hack/lib/version.sh), so
  # /version reports the pinned release rather than v0.0.0-master.
  printf -- '-X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean -X %s.buildDate=%s' \
    "$pkg" "$KUBE_VERSION" "$pkg" "$major" "$pkg" "$minor" "$pkg" "$pkg" "1970-01-01T00:00:00Z"
  printf -- ' -X k8s.io/client-go/pkg/version.gitVersion=%s -X k8s.io/client-go/pkg/version.gitMajor=%s -X k8s.io/client-go/pkg/version.gitMinor=%s' \
    "$KUBE_VERSION" "$major" "$minor"
}

# The real node's runtime and the image tooling come from Debian's packages (installed when missing;
# the test bed's own binaries below are built from source).
DEBS=(containerd runc containernetworking-plugins iptables conntrack iproute2 debootstrap docker-registry socat gcc libc6-dev strace)
ensure_debs() {
  local missing=()
  for p in "${DEBS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  ((EUID == 0)) || { log "missing Debian packages (install them as root): ${missing[*]}"; exit 1; }
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

total=$SECONDS
ensure_debs
build_go etcd etcd go.etcd.io/etcd/server/v3
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  build_go kube "$c" "k8s.io/kubernetes/cmd/$c" "$(kube_ldflags)"
done
build_go kwok kwok sigs.k8s.io/kwok/cmd/kwok \
  "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBE_VERSION}"
build_go helm helm helm.sh/helm/v3/cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

azurite_dir="$cache/azurite"
if [[ ! -x "$azurite_dir/node_modules/.bin/azurite-blob" ]]; then
  log "installing azurite@${AZURITE_VERSION} from npm"
  mkdir -p "$azurite_dir"
  npm install --silent --no-audit --no-fund --prefix "$azurite_dir" "azurite@${AZURITE_VERSION}" >&2
fi
ln -sf "$azurite_dir/node_modules/.bin/azurite-blob" "$bin/azurite-blob"

# crane (go-containerregistry): hack/images.sh assembles and pushes the test bed's OCI images with it.
build_go crane crane github.com/google/go-containerregistry/cmd/crane

# Prometheus: the canary analysis's Prometheus path is tested against a real one (tests/integration/prometheus).
# Module v0.316.0 is Prometheus 3.16.0. Without the builtinassets tag the web UI is served from disk (absent
# here), which is fine: only the HTTP API is used. remove_all_sd leaves out the service discoveries of the
# clouds and Kubernetes (the tests use static_configs): fewer modules to fetch and compile.
build_go prometheus prometheus github.com/prometheus/prometheus/cmd/prometheus \
  "-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v} -X github.com/prometheus/common/version.Branch=HEAD" \
  remove_all_sd

for f in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kwok helm crane prometheus azurite-blob; do
  ln -sf "$bin/$f" "$repo/.local/bin/$f"
done
log "tools ready in $((SECONDS - total))s: $bin"
