#!/usr/bin/env bash
# The local test bed: a real control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) built from source, one real node (hack/node.sh: containerd, runc, CNI, kubelet,
# kube-proxy, a local registry), KWOK simulating two tainted nodes, and Azurite as the blob store.
#
#   hack/cluster.sh up [azurite]   start everything (or only Azurite); a no-op for what already runs
#   hack/cluster.sh down           stop everything this script started, leaving no process behind
#   hack/cluster.sh status         say what runs
#   hack/cluster.sh stop NAME      stop one component (tests use it to simulate an outage)
#
# State lives in .local/: kubeconfig, testbed.env, pki/, logs/, run/ (pid files), data/, node/.
# Root is needed for the real node (network namespaces, mounts, cgroups).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
local_dir="$repo/.local"
bin="$local_dir/bin"
pki="$local_dir/pki"
run="$local_dir/run"
logs="$local_dir/logs"
data="$local_dir/data"
kubeconfig="$local_dir/kubeconfig"
cache_root=${MODELAPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelapp}

ETCD_PORT=${ETCD_PORT:-2379}
APISERVER_PORT=${APISERVER_PORT:-6443}
AZURITE_PORT=${AZURITE_PORT:-10000}
# The order matters for `up`; `down` stops in reverse.
CONTROL_PLANE=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
COMPONENTS=(azurite "${CONTROL_PLANE[@]}")

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT=devstoreaccount1

log() { printf '[cluster] %s\n' "$*" >&2; }
# shellcheck source=node.sh
source "$repo/hack/node.sh"
die() { log "error: $*"; exit 1; }

pid_of() { [[ -f "$run/$1.pid" ]] && cat "$run/$1.pid" || true; }
is_running() {
  local pid; pid=$(pid_of "$1")
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

wait_for() { # description timeout-seconds command...
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what (logs: $logs)"
    sleep 0.3
  done
}

ensure_tools() { # binaries...
  local missing=0
  for b in "$@"; do
    [[ -x "$bin/$b" ]] || missing=1
  done
  if ((missing)); then bash "$repo/hack/build-tools.sh"; fi
}

# --- PKI -------------------------------------------------------------------------------
client_cert() { # name CN O
  local name=$1 cn=$2 org=$3
  [[ -f "$pki/$name.crt" ]] && return 0
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" \
    -subj "/CN=$cn/O=$org" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 365 -out "$pki/$name.crt" -extfile <(printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment') 2>/dev/null
}

ensure_pki() {
  mkdir -p "$pki"
  [[ -f "$pki/ca.crt" ]] || openssl req -x509 -new -newkey rsa:2048 -nodes -days 365 \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=modelapp-testbed-ca" 2>/dev/null
  if [[ ! -f "$pki/apiserver.crt" ]]; then
    openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" \
      -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 365 \
      -out "$pki/apiserver.crt" -extfile <(printf '%s\n' \
        'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:10.250.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local' \
        'extendedKeyUsage=serverAuth' 'keyUsage=critical,digitalSignature,keyEncipherment') 2>/dev/null
  fi
  [[ -f "$pki/sa.key" ]] || { openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null &&
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null; }
  # Each component gets its own identity, so RBAC on the test bed is as real as in a cluster.
  client_cert admin kubernetes-admin system:masters
  client_cert controller-manager system:kube-controller-manager system:kube-controller-manager
  client_cert scheduler system:kube-scheduler system:kube-scheduler
  client_cert kwok system:kwok-controller system:masters
  ensure_node_pki
  chmod 600 "$pki"/*.key
}

write_kubeconfig() { # file user [server-address]
  local file=$1 user=$2 server=${3:-127.0.0.1}
  local ca crt key
  ca=$(base64 -w0 <"$pki/ca.crt"); crt=$(base64 -w0 <"$pki/$user.crt"); key=$(base64 -w0 <"$pki/$user.key")
  # umask in a subshell: the processes started later (containerd above all) must keep the default,
  # or every container's root directory is 0700 and only root can use it (the real node found this).
  (umask 077 && cat >"$file") <<EOF
apiVersion: v1
kind: Config
clusters:
- name: modelapp-testbed
  cluster:
    server: https://$server:$APISERVER_PORT
    certificate-authority-data: $ca
users:
- name: $user
  user:
    client-certificate-data: $crt
    client-key-data: $key
contexts:
- name: modelapp-testbed
  context: {cluster: modelapp-testbed, user: $user}
current-context: modelapp-testbed
EOF
}

# --- components ------------------------------------------------------------------------
start() { # name command...
  local name=$1; shift
  if is_running "$name"; then return 0; fi
  mkdir -p "$run" "$logs"
  # setsid: each component leads its own process group, so `down` can take children too.
  setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null &
  echo $! >"$run/$name.pid"
  log "started $name (pid $!)"
}

start_azurite() {
  mkdir -p "$data/azurite"
  start azurite "$bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" \
    --location "$data/azurite" --debug "$logs/azurite-debug.log" --skipApiVersionCheck --loose --disableProductStyleUrl
  wait_for "Azurite on 127.0.0.1:$AZURITE_PORT" 60 bash -c "exec 3<>/dev/tcp/127.0.0.1/$AZURITE_PORT"
}

start_etcd() {
  mkdir -p "$data/etcd"
  # --unsafe-no-fsync: a throwaway test store; durability is not what is being tested.
  start etcd "$bin/etcd" --name testbed --data-dir "$data/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster testbed=http://127.0.0.1:2380 --unsafe-no-fsync --log-level warn
  wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address "$HOST_IP" --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP \
    --authorization-mode Node,RBAC --anonymous-auth=false \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true \
    --enable-admission-plugins NodeRestriction --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 120 curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz"
}

start_controller_manager() {
  write_kubeconfig "$local_dir/controller-manager.kubeconfig" controller-manager
  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$local_dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$local_dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$local_dir/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=true --cluster-name modelapp-testbed \
    --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-persistentvolume-binder,-attachdetach' \
    --node-monitor-grace-period 60s --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 --v=1
}

start_scheduler() {
  write_kubeconfig "$local_dir/scheduler.kubeconfig" scheduler
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$local_dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$local_dir/scheduler.kubeconfig" \
    --authorization-kubeconfig "$local_dir/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --v=1
}

start_kwok() {
  write_kubeconfig "$local_dir/kwok.kubeconfig" kwok
  start kwok "$bin/kwok" --kubeconfig "$local_dir/kwok.kubeconfig" \
    --config "$repo/hack/kwok/stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds 40 --cidr 10.244.0.0/16 --node-ip 10.0.0.1 \
    --server-address 127.0.0.1:10247
  kubectl --kubeconfig "$kubeconfig" apply -f "$repo/hack/kwok/nodes.yaml" >/dev/null
  wait_for "two Ready KWOK nodes" 90 bash -c \
    "[[ \$(kubectl --kubeconfig '$kubeconfig' get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}' | grep -c True) -ge 2 ]]"
}

cmd_up() {
  local only=${1:-all}
  mkdir -p "$local_dir" "$logs" "$run" "$data"
  if [[ "$only" == azurite ]]; then ensure_tools azurite-blob; else
    ensure_tools etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kwok azurite-blob
    ((EUID == 0)) || die "the real node needs root (network namespaces, mounts, cgroups)"
  fi
  start_azurite
  [[ "$only" == azurite ]] && { log "Azurite: http://127.0.0.1:$AZURITE_PORT/$AZURITE_ACCOUNT"; return 0; }
  ensure_pki
  write_kubeconfig "$kubeconfig" admin
  local was_running=1
  for c in "${CONTROL_PLANE[@]}" "${NODE_COMPONENTS[@]}"; do is_running "$c" || was_running=0; done
  if ((was_running)) && [[ -f "$local_dir/testbed.env" ]]; then
    log "already running; bringing the project's images up to date"
    node_images
    return 0
  fi
  local t0=$SECONDS
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  start_kwok
  node_up
  wait_for "the default ServiceAccount" 60 kubectl --kubeconfig "$kubeconfig" -n default get serviceaccount default
  log "up in $((SECONDS - t0))s: source $local_dir/testbed.env (or export KUBECONFIG=$kubeconfig)"
}

stop_component() {
  local name=$1 pid
  pid=$(pid_of "$name")
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    log "stopped $name"
  fi
  rm -f "$run/$name.pid"
}

cmd_down() {
  local i
  # The node first: its kubelet must not see the API server go, and its pods go with it.
  node_down
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_component "${COMPONENTS[i]}"; done
  # Anything started from this checkout's binaries that lost its pid file (a crashed `up`).
  pkill -KILL -f "$bin/(etcd|kube|kwok|azurite)" 2>/dev/null || true
  rm -f "$local_dir/testbed.env"
  rm -rf "$data"
  log "down"
}

cmd_status() {
  local rc=0
  for c in "${COMPONENTS[@]}" "${NODE_COMPONENTS[@]}"; do
    if is_running "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: stopped"; rc=3; fi
  done
  return $rc
}

case "${1:-}" in
  up) cmd_up "${2:-all}" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  stop) [[ -n "${2:-}" ]] || { echo "usage: $0 stop COMPONENT" >&2; exit 2; }; stop_component "$2" ;;
  *) echo "usage: $0 up [azurite] | down | status | stop COMPONENT" >&2; exit 2 ;;
esac
