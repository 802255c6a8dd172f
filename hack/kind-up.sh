#!/usr/bin/env bash
# For people with Docker: a kind cluster with a local registry (localhost:5001), Azurite in the cluster, the
# operator and scorer images built and pushed, the chart installed, the diabetes example published and a
# ModelApp applied. Re-running it reuses what exists.
#
#   hack/kind-up.sh            up (needs docker, kind, kubectl, helm, and `make install` for the venv)
#   hack/kind-up.sh down       delete the kind cluster and the registry container
#
# The registry wiring follows kind's "local registry" guide (containerd config_path + hosts.toml).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
CLUSTER=${KIND_CLUSTER:-modelapp}
REG_NAME=kind-registry
REG_PORT=${REG_PORT:-5001}
NS=modelapp-system
APP_NS=${APP_NS:-default}
TAG=${TAG:-dev}
AZ_LOCAL_PORT=${AZ_LOCAL_PORT:-10010}
PY=${PY:-$repo/.venv/bin/python}
MODELAPP=${MODELAPP:-$repo/.venv/bin/modelapp}
# Azurite's documented development account key (public, not a secret).
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
# shellcheck source=hack/versions.env
source "$repo/hack/versions.env"  # AZURITE_VERSION: the same Azurite as the test bed
AZ_IN_CLUSTER_HOST="azurite.$NS.svc.cluster.local:10000"
# Azurite is no Azure blob host: the operator is told to send it credentials (allowed_account_hosts).
AZ_IN_CLUSTER="http://$AZ_IN_CLUSTER_HOST/devstoreaccount1"

log() { printf '[kind-up] %s\n' "$*" >&2; }

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { log "missing: $tool"; exit 1; }
  done
}

connection_string() { # blob endpoint
  printf 'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=%s;BlobEndpoint=%s;' "$AZ_KEY" "$1"
}

registry() {
  if [[ "$(docker inspect -f '{{.State.Running}}' "$REG_NAME" 2>/dev/null || true)" != true ]]; then
    docker run -d --restart=always -p "127.0.0.1:${REG_PORT}:5000" --network bridge --name "$REG_NAME" registry:2
  fi
}

cluster() {
  if ! kind get clusters | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --wait 120s --config=- <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
YAML
  fi
  # Nodes resolve localhost:5001 to the registry container over the kind network.
  local node dir="/etc/containerd/certs.d/localhost:${REG_PORT}"
  for node in $(kind get nodes --name "$CLUSTER"); do
    docker exec "$node" mkdir -p "$dir"
    printf '[host."http://%s:5000"]\n' "$REG_NAME" | docker exec -i "$node" cp /dev/stdin "$dir/hosts.toml"
  done
  if [[ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REG_NAME")" == null ]]; then
    docker network connect kind "$REG_NAME"
  fi
  kubectl apply -f - <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${REG_PORT}"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
YAML
}

images() {
  local reg="localhost:${REG_PORT}"
  docker build -f "$repo/Dockerfile.operator" -t "$reg/modelapp-operator:$TAG" "$repo"
  docker build -f "$repo/Dockerfile.operator" --target fetch -t "$reg/modelapp-fetch:$TAG" "$repo"
  docker build -f "$repo/Dockerfile.scoring" -t "$reg/scoring-service:$TAG" "$repo"
  docker push "$reg/modelapp-operator:$TAG"
  docker push "$reg/modelapp-fetch:$TAG"
  docker push "$reg/scoring-service:$TAG"
}

azurite() {
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: azurite
  labels: {app.kubernetes.io/name: azurite}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: azurite}
  template:
    metadata:
      labels: {app.kubernetes.io/name: azurite}
    spec:
      containers:
      - name: azurite
        image: mcr.microsoft.com/azure-storage/azurite:${AZURITE_VERSION}
        command: [azurite-blob, --blobHost, 0.0.0.0, --blobPort, "10000", --location, /data, --loose, --skipApiVersionCheck]
        ports: [{name: blob, containerPort: 10000}]
        readinessProbe: {tcpSocket: {port: blob}, periodSeconds: 2}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata:
  name: azurite
spec:
  selector: {app.kubernetes.io/name: azurite}
  ports: [{name: blob, port: 10000, targetPort: blob}]
YAML
  kubectl -n "$NS" rollout status deployment/azurite --timeout=180s
}

operator() {
  local reg="localhost:${REG_PORT}"
  helm upgrade --install modelapp "$repo/charts/modelapp-operator" -n "$NS" --create-namespace --wait \
    --set image.repository="$reg/modelapp-operator" --set image.tag="$TAG" --set image.pullPolicy=Always \
    --set defaults.fetchImage="$reg/modelapp-fetch:$TAG" \
    --set defaults.scorerImage="$reg/scoring-service:$TAG" \
    --set defaults.baseImage="$reg/scoring-service:$TAG" \
    --set-json "allowedAccountHosts=[\"${AZ_IN_CLUSTER_HOST}\"]"
}

publish() {
  local bundle pf
  bundle=$(mktemp -d)
  "$PY" "$repo/examples/diabetes/train.py" --out "$bundle/diabetes" --version 1.0.0
  kubectl -n "$NS" port-forward svc/azurite "${AZ_LOCAL_PORT}:10000" >/dev/null &
  pf=$!
  trap 'kill "$pf" 2>/dev/null || true' RETURN
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/${AZ_LOCAL_PORT}") 2>/dev/null && break
    sleep 0.2
  done
  MODELAPP_CONNECTION_STRING=$(connection_string "http://127.0.0.1:${AZ_LOCAL_PORT}/devstoreaccount1") \
    "$MODELAPP" publish "$bundle/diabetes" --container models --prefix diabetes/ --version 1.0.0 \
    --create-container --force
}

modelapp() {
  kubectl -n "$APP_NS" create secret generic blob-creds \
    --from-literal=connectionString="$(connection_string "$AZ_IN_CLUSTER")" --dry-run=client -o yaml |
    kubectl -n "$APP_NS" apply -f -
  kubectl -n "$APP_NS" apply -f "$repo/charts/modelapp-operator/examples/modelapp.yaml"
  kubectl -n "$APP_NS" wait --for=condition=Ready modelapp/diabetes --timeout=300s
  kubectl -n "$APP_NS" get modelapps
}

case "${1:-up}" in
  up)
    need docker kind kubectl helm
    [[ -x "$MODELAPP" ]] || { log "no $MODELAPP: run 'make install' first"; exit 1; }
    registry
    cluster
    images
    azurite
    operator
    publish
    modelapp
    log "done: kubectl -n $APP_NS get modelapps; publish 1.1.0 the same way and watch it roll out"
    ;;
  down)
    need docker kind
    kind delete cluster --name "$CLUSTER"
    docker rm -f "$REG_NAME" >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 [up|down]" >&2; exit 2 ;;
esac
