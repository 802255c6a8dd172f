#!/usr/bin/env bash
# Builds one of the project's Dockerfiles with Kaniko running as a pod on the test bed's real node
# (the same executor image the operator's build Jobs use), FROM the local Debian-made Python base,
# with the wheelhouse in the build context (the pod never reaches a package index), and pushes it to
# the local registry. Rebuilt only when the context, the Dockerfile target, the base or Kaniko change:
# the tag is a hash of all of them, and a tag the registry already holds is not built again.
#
#   hack/kaniko-build.sh NAME DOCKERFILE TARGET    prints REGISTRY/modelapp/NAME@sha256:...  (TARGET - : the last stage)
#
# Needs: the test bed up (KUBECONFIG), hack/images.sh's pushed images (pushed.env).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache_root=${MODELAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelapp}
kubeconfig=${KUBECONFIG:-$repo/.local/kubeconfig}
crane="$repo/.local/bin/crane"
ns=modelapp-testbed

log() { printf '[kaniko-build] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
k() { kubectl --kubeconfig "$kubeconfig" "$@"; }

[[ $# -eq 3 ]] || { echo "usage: $0 NAME DOCKERFILE TARGET" >&2; exit 2; }
name=$1 dockerfile=$2 target=$3
pushed() { # name: its ref@digest from hack/images.sh push
  local v; v=$(sed -n "s/^$1=//p" "$cache_root/images/pushed.env" 2>/dev/null)
  [[ -n $v ]] || die "$cache_root/images/pushed.env names no $1 (run hack/images.sh push REGISTRY)"
  echo "$v"
}
registry=$(pushed registry)
kaniko=$(pushed kaniko)
python=$(pushed python)

# The context: tracked files (honouring .dockerignore) plus the wheelhouse, in a content-named folder.
staging=$(mktemp -d "$cache_root/contexts/.new-XXXXXX" 2>/dev/null || { mkdir -p "$cache_root/contexts" &&
  mktemp -d "$cache_root/contexts/.new-XXXXXX"; })
trap 'rm -rf "$staging"' EXIT
bash "$repo/hack/images.sh" context "$dockerfile" "$staging" >&2
key=$( (cd "$staging" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  printf '%s\n' "$dockerfile" "$target" "$python" "$kaniko") | sha256sum | cut -c1-16)
ref="$registry/modelapp/$name:$key"

if digest=$("$crane" digest "$ref" 2>/dev/null); then
  log "$name is current ($ref)"
  echo "$registry/modelapp/$name@$digest"
  exit 0
fi

context="$cache_root/contexts/$name-$key"
rm -rf "$context"
mv "$staging" "$context"
chmod -R a+rX "$context"
pod="build-$name-${key:0:10}"
log "building $name with Kaniko in pod $ns/$pod (context $context)"
start=$SECONDS
k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
# A new namespace gets its default ServiceAccount a moment later (the controller-manager makes it); a pod
# created before that is refused ("serviceaccount default not found"), which a fresh test bed did hit.
for _ in $(seq 1 120); do
  k -n "$ns" get serviceaccount default >/dev/null 2>&1 && break
  sleep 0.5
done
k -n "$ns" delete pod "$pod" --ignore-not-found --wait=true >/dev/null
k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $pod
  labels: {app.kubernetes.io/name: testbed-image-build, app.kubernetes.io/part-of: modelapp-testbed}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: kaniko
    image: $kaniko
    args:
    - --context=dir:///workspace
    - --dockerfile=/workspace/$dockerfile
$([[ $target == - ]] || echo "    - --target=$target")
    - --destination=$ref
    - --build-arg=PYTHON_IMAGE=$python
    - --build-arg=PIP_WHEELS=wheels
    - --digest-file=/dev/termination-log
    - --snapshot-mode=redo
    - --single-snapshot
    - --cleanup
    volumeMounts: [{name: context, mountPath: /workspace, readOnly: true}]
    resources: {requests: {cpu: 500m, memory: 1Gi}}
  volumes:
  - name: context
    hostPath: {path: $context, type: Directory}
EOF
phase=""
deadline=$((SECONDS + ${MODELAPP_KANIKO_TIMEOUT:-1200}))
while ((SECONDS < deadline)); do
  phase=$(k -n "$ns" get pod "$pod" -o jsonpath='{.status.phase}' 2>/dev/null || true)
  [[ $phase == Succeeded || $phase == Failed ]] && break
  sleep 2
done
k -n "$ns" logs "$pod" >"$repo/.local/logs/kaniko-$name.log" 2>&1 || true
if [[ $phase != Succeeded ]]; then
  tail -n 40 "$repo/.local/logs/kaniko-$name.log" >&2 || true
  die "Kaniko build of $name ended ${phase:-in a time-out} (log: .local/logs/kaniko-$name.log)"
fi
digest=$(k -n "$ns" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].state.terminated.message}')
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || die "Kaniko wrote no digest for $name (got '$digest')"
registry_digest=$("$crane" digest "$ref")
[[ $registry_digest == "$digest" ]] || die "$name: Kaniko says $digest, the registry holds $registry_digest"
k -n "$ns" delete pod "$pod" --wait=false >/dev/null
log "built $name in $((SECONDS - start))s: $digest"
echo "$registry/modelapp/$name@$digest"
