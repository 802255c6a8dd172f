# shellcheck shell=bash
# The test bed's real node, sourced by hack/cluster.sh: containerd + runc + CNI (bridge, host-local,
# loopback, portmap), a kubelet and kube-proxy (iptables mode), and a local OCI registry.
#
# Network: the node lives in its own network namespace, `modelapp-node`, joined to the host by one
# veth pair. Everything the node creates (the pod bridge, pod veths, kube-proxy's and CNI's iptables
# chains, conntrack state) lives in that namespace or in the pods' own, so deleting it removes them.
# The node namespace has no default route: pods reach the host's 10.250.0.1 (API server, Azurite,
# registry) and each other, and nothing else.
#
#   host  10.250.0.1/30 (mapp-host) ── veth ── (mapp-node) 10.250.0.2/30  node netns, kubelet's node IP
#   pods  10.245.0.0/24 on bridge mapp0 (10.245.0.1) in the node netns; host route via 10.250.0.2
#   Services 10.96.0.0/16 (kube-proxy DNAT in the node netns); host route via 10.250.0.2
#
# The API server and Azurite listen on 127.0.0.1; socat forwards 10.250.0.1:{6443,10000} to them,
# so the host keeps using loopback and pods use one address for all three services.

NODE_NAME=modelapp-node
NODE_NETNS=modelapp-node
HOST_IP=10.250.0.1
NODE_IP=10.250.0.2
POD_CIDR=10.245.0.0/24
POD_GATEWAY=10.245.0.1
SERVICE_CIDR=10.96.0.0/16
REGISTRY_PORT=${REGISTRY_PORT:-5000}
REGISTRY="$HOST_IP:$REGISTRY_PORT"
NODE_COMPONENTS=(registry apiserver-bridge azurite-bridge containerd kubelet kube-proxy)

node_dir="$local_dir/node"
netns_path="/var/run/netns/$NODE_NETNS"
# Host paths outside .local/ that containerd, CNI or the kubelet (device plugins) use whatever they are told; `down` removes the
# ones `up` created (listed in $node_dir/created).
NODE_HOST_PATHS=(/run/containerd /var/lib/cni /run/netns /var/lib/kubelet)
# Kernel settings the kubelet changes on start (setupKernelTunables); `down` puts them back.
KUBELET_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
CGROUP_ROOT=/sys/fs/cgroup

in_node() { nsenter --net="$netns_path" -- "$@"; }

# --- network ---------------------------------------------------------------------------
node_net_up() {
  mkdir -p "$node_dir"
  local p
  for p in "${NODE_HOST_PATHS[@]}"; do
    [[ -e "$p" ]] || realpath -m "$p" >>"$node_dir/created"
  done
  if [[ ! -f "$node_dir/sysctls" ]]; then
    for p in "${KUBELET_SYSCTLS[@]}"; do echo "$p=$(cat "/proc/sys/$p")"; done >"$node_dir/sysctls"
  fi
  [[ -e "$netns_path" ]] && return 0
  ip netns add "$NODE_NETNS"
  ip link add mapp-host type veth peer name mapp-node netns "$NODE_NETNS"
  ip addr add "$HOST_IP/30" dev mapp-host
  ip link set mapp-host up
  in_node ip link set lo up
  in_node ip addr add "$NODE_IP/30" dev mapp-node
  in_node ip link set mapp-node up
  # Per-namespace settings: the node routes for its pods; bridged pod traffic crosses iptables
  # (Services between pods on one bridge need it).
  in_node sysctl -qw net.ipv4.ip_forward=1
  modprobe br_netfilter 2>/dev/null || true
  in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  ip route add "$POD_CIDR" via "$NODE_IP" dev mapp-host
  ip route add "$SERVICE_CIDR" via "$NODE_IP" dev mapp-host
  log "node network: host $HOST_IP, node $NODE_IP (netns $NODE_NETNS), pods $POD_CIDR"
}

# --- PKI for the node ------------------------------------------------------------------
server_cert() { # name CN ip
  local name=$1 cn=$2 ip=$3
  [[ -f "$pki/$name.crt" ]] && return 0
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "/CN=$cn" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 365 \
    -out "$pki/$name.crt" -extfile <(printf '%s\n' "subjectAltName=IP:$ip,DNS:$cn" \
      'extendedKeyUsage=serverAuth' 'keyUsage=critical,digitalSignature,keyEncipherment') 2>/dev/null
}

ensure_node_pki() {
  client_cert kubelet "system:node:$NODE_NAME" system:nodes
  client_cert kube-proxy system:kube-proxy system:node-proxier
  client_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  server_cert kubelet-serving "$NODE_NAME" "$NODE_IP"
  chmod 600 "$pki"/*.key
}

# --- components ------------------------------------------------------------------------
start_bridges() {
  # One address for host and pods: 10.250.0.1 forwards to the loopback listeners.
  start apiserver-bridge socat "TCP-LISTEN:$APISERVER_PORT,bind=$HOST_IP,reuseaddr,fork" "TCP:127.0.0.1:$APISERVER_PORT"
  start azurite-bridge socat "TCP-LISTEN:$AZURITE_PORT,bind=$HOST_IP,reuseaddr,fork" "TCP:127.0.0.1:$AZURITE_PORT"
}

start_registry() {
  # The registry's blobs persist in the cache (images rebuild only when their inputs change).
  local store="$cache_root/registry"
  mkdir -p "$store" "$node_dir"
  cat >"$node_dir/registry.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $store}
  delete: {enabled: true}
http: {addr: "$REGISTRY"}
EOF
  start registry /usr/bin/docker-registry serve "$node_dir/registry.yml"
  wait_for "registry on $REGISTRY" 30 curl -sf "http://$REGISTRY/v2/"
}

write_containerd_config() {
  local c="$node_dir/containerd"
  mkdir -p "$c" "$node_dir/certs.d/$REGISTRY" "$node_dir/cni/net.d"
  # Plain HTTP for the local registry, configured here and nowhere else.
  cat >"$node_dir/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve", "push"]
EOF
  cat >"$node_dir/cni/net.d/10-modelapp.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "modelapp", "plugins": [
  {"type": "bridge", "bridge": "mapp0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$node_dir/cni/ipam",
            "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
EOF
  # restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, so a negative oom_score_adj fails
  # every sandbox in runc unless it is clamped to the current value.
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$REGISTRY/modelapp/pause:3.10.1"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$c/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node_dir/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$node_dir/certs.d"
EOF
}

start_containerd() {
  write_containerd_config
  start containerd nsenter --net="$netns_path" -- containerd --config "$node_dir/containerd/config.toml"
  wait_for containerd 60 test -S "$node_dir/containerd/containerd.sock"
}

write_kubelet_config() {
  local k="$node_dir/kubelet"
  mkdir -p "$k" "$node_dir/pod-logs"
  write_kubeconfig "$node_dir/kubelet.kubeconfig" kubelet "$HOST_IP"
  # Pods get no DNS (the test bed runs none): lookups fail at once instead of timing out.
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$node_dir/resolv.conf"
  cat >"$node_dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 here; 1.34 still runs on it when told to.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$node_dir/containerd/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: $node_dir/resolv.conf
podLogsDir: $node_dir/pod-logs
failSwapOn: false
maxPods: 60
serializeImagePulls: false
# The test bed shares its disk with everything else on the machine: never evict for disk.
evictionHard: {memory.available: 100Mi, nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 20s
registerNode: true
EOF
}

start_kubelet() {
  write_kubelet_config
  start kubelet nsenter --net="$netns_path" -- "$bin/kubelet" --config "$node_dir/kubelet.yaml" \
    --kubeconfig "$node_dir/kubelet.kubeconfig" --root-dir "$node_dir/kubelet" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --node-labels "type=real,modelapp.dev/testbed-node=real" --v=1
}

start_kube_proxy() {
  write_kubeconfig "$node_dir/kube-proxy.kubeconfig" kube-proxy "$HOST_IP"
  cat >"$node_dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $node_dir/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
nodePortAddresses: ["$NODE_IP/32"]
# Leave the host's conntrack limits alone (they are not this namespace's).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOF
  start kube-proxy nsenter --net="$netns_path" -- "$bin/kube-proxy" --config "$node_dir/kube-proxy.yaml" --v=1
}

node_ready() {
  [[ $(kubectl --kubeconfig "$kubeconfig" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

node_up() {
  ensure_node_pki
  node_net_up
  start_bridges
  start_registry
  bash "$repo/hack/images.sh" push "$REGISTRY" >/dev/null
  start_containerd
  start_kubelet
  start_kube_proxy
  wait_for "node $NODE_NAME Ready" 180 node_ready
  node_images
}

# The project's own images, built by Kaniko in a pod on the node (each skipped when current), and the
# test bed's env file naming them by digest. `up` runs this on a running bed too, after code changes.
node_images() {
  KUBECONFIG=$kubeconfig bash "$repo/hack/kaniko-build.sh" scoring-service Dockerfile.scoring - >"$node_dir/scorer.ref"
  KUBECONFIG=$kubeconfig bash "$repo/hack/kaniko-build.sh" modelapp-operator Dockerfile.operator operator >"$node_dir/operator.ref"
  write_testbed_env
}

write_testbed_env() {
  local pushed="$cache_root/images/pushed.env"
  {
    echo "# Written by hack/cluster.sh up: the test bed's addresses and images (source it)."
    echo "export KUBECONFIG=$kubeconfig"
    echo "export MODELAPP_TESTBED_REGISTRY=$REGISTRY"
    echo "export MODELAPP_TESTBED_BLOB_URL=http://$HOST_IP:$AZURITE_PORT/$AZURITE_ACCOUNT"
    echo "export MODELAPP_TESTBED_REAL_NODE=$NODE_NAME"
    echo "export MODELAPP_TESTBED_KANIKO_IMAGE=$(sed -n 's/^kaniko=//p' "$pushed")"
    echo "export MODELAPP_TESTBED_PYTHON_IMAGE=$(sed -n 's/^python=//p' "$pushed")"
    echo "export MODELAPP_TESTBED_BASE_IMAGE=$(cat "$node_dir/scorer.ref")"
    echo "export MODELAPP_TESTBED_OPERATOR_IMAGE=$(cat "$node_dir/operator.ref")"
  } >"$local_dir/testbed.env"
}

# --- teardown --------------------------------------------------------------------------
kill_kubepods() {
  # Container processes outlive a killed shim: end every process in the kubelet's cgroups first.
  local procs
  for _ in 1 2 3; do
    procs=$(find "$CGROUP_ROOT"/*/kubepods* -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u || true)
    [[ -z "$procs" ]] && break
    # shellcheck disable=SC2086
    kill -KILL $procs 2>/dev/null || true
    sleep 0.3
  done
}

remove_kubepods_cgroups() {
  local d
  for d in "$CGROUP_ROOT"/*/kubepods*; do
    [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

unmount_under() { # dir
  local m
  # Deepest first, so nested mounts (a container's /dev/shm inside its rootfs) go before parents.
  for m in $(awk -v d="$1" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
}

node_down() {
  local i pid
  for ((i = ${#NODE_COMPONENTS[@]} - 1; i >= 0; i--)); do
    [[ ${NODE_COMPONENTS[i]} == containerd ]] && kill_kubepods
    stop_component "${NODE_COMPONENTS[i]}"
  done
  kill_kubepods
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $node_dir/" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  pkill -KILL -f "socat TCP-LISTEN:[0-9]+,bind=$HOST_IP" 2>/dev/null || true
  [[ -d "$node_dir" ]] && unmount_under "$node_dir"
  [[ -e "$netns_path" ]] && ip netns delete "$NODE_NETNS" 2>/dev/null
  ip link delete mapp-host 2>/dev/null || true
  remove_kubepods_cgroups
  if [[ -f "$node_dir/sysctls" ]]; then
    local kv
    while IFS= read -r kv; do echo "${kv#*=}" >"/proc/sys/${kv%%=*}" 2>/dev/null || true; done <"$node_dir/sysctls"
  fi
  if [[ -f "$node_dir/created" ]]; then
    local p
    while IFS= read -r p; do unmount_under "$p"; rm -rf "$p" || log "could not remove $p"; done < <(sort -ru "$node_dir/created")
  fi
  rm -rf "$node_dir"
}
