#!/usr/bin/env bash
# A single-node cluster on this machine, on top of tools/k8s/control-plane.sh (etcd + kube-apiserver):
# kube-controller-manager, kube-scheduler, containerd (Debian's, its own socket and state) and a kubelet, with the
# images of tools/k8s/images.sh imported, pods on a CNI bridge; kube-proxy (iptables) for Services and CoreDNS for
# the cluster's names. kube-proxy and CoreDNS run as host processes beside the kubelet (as a node's add-ons, with
# the admin kubeconfig), not as pods: CoreDNS listens on the node's address, which every pod reaches through the
# bridge's gateway, and the kubelet gives pods that address as their nameserver.
#
#   tools/k8s/node.sh start    # build what is missing, start every part, wait for the node to be Ready
#   tools/k8s/node.sh stop     # stop exactly what start started; remove the pods' containers, mounts, cgroups
#   tools/k8s/node.sh status   # exit 0 when every part runs and the node is Ready
#   tools/k8s/node.sh import   # (re)import .local/images/*.tar into the node's containerd
#
# This machine's quirks, each handled here (../shared/k8s-runtime/NOTES.md has the trials):
# - cgroups are v1 (hybrid): kubelet needs failCgroupV1: false and the cgroupfs driver; crun refuses the
#   hybrid mode, so containerd runs runc.
# - root lacks CAP_SYS_RESOURCE, so nothing may lower oom_score_adj: containerd's restrict_oom_score_adj.
# - no registry: the pause image and every pod image are built here and imported (imagePullPolicy: Never).
# - kubelet 1.37 warns that its support for containerd 1.x (Debian bookworm's 1.6.20) ends in 1.38: moving
#   Kubernetes past 1.37 needs containerd 2.
#
# Settings (environment): NODE_IP (the address of the default route's interface), IMAGE_TAG (dev).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
COMPONENT=node
# shellcheck source=scripts/common.sh
. "$HERE/../../scripts/common.sh"
# shellcheck source=tools/k8s/versions.env
. "$HERE/versions.env"

BIN="$LOCAL/bin"
K8S="$LOCAL/k8s"
PKI="$K8S/pki"
KUBECONFIG_FILE="$K8S/kubeconfig"
NODE="$LOCAL/node"
CTRD="$NODE/containerd"
SOCK="$CTRD/containerd.sock"
KUBELET_ROOT="$NODE/kubelet"
NODE_NAME="notify-node"
POD_CIDR="10.244.0.0/24"
BRIDGE="notifycni0"
TAG="${IMAGE_TAG:-dev}"
NODE_IP="${NODE_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')}"
PARTS=(containerd kube-controller-manager kube-scheduler kubelet kube-proxy coredns)
CLUSTER_DOMAIN="cluster.local"

kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
ctr() { command ctr --address "$SOCK" --namespace k8s.io "$@"; }

write_containerd_config() {
  mkdir -p "$CTRD/cni-conf" "$CTRD/cni-ipam"
  cat >"$CTRD/config.toml" <<EOF
# Written by tools/k8s/node.sh.
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:$TAG"
  # root here lacks CAP_SYS_RESOURCE: a pod sandbox's oom_score_adj of -998 would fail runc
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CTRD/cni-conf"
EOF
  cat >"$CTRD/cni-conf/10-notify.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "notify", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$CTRD/cni-ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
}

write_kubelet_config() {
  mkdir -p "$KUBELET_ROOT" "$NODE/pod-logs"
  cat >"$NODE/kubelet.yaml" <<EOF
# Written by tools/k8s/node.sh.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$SOCK
podLogsDir: $NODE/pod-logs
enforceNodeAllocatable: []
address: $NODE_IP
port: 20250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 20248
authentication:
  anonymous: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$NODE_IP]
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {}
EOF
}

start_containerd() {
  write_containerd_config
  start_daemon containerd "$LOG_DIR/containerd.log" "$(command -v containerd)" --config "$CTRD/config.toml"
  for _ in $(seq 60); do [[ -S $SOCK ]] && ctr version >/dev/null 2>&1 && return; sleep 0.5; done
  die "containerd did not answer on $SOCK (log $LOG_DIR/containerd.log)"
}

import_images() {
  local tar
  for tar in "$LOCAL/images"/*.tar; do
    [[ -f $tar ]] || die "no images in $LOCAL/images: run tools/k8s/images.sh build"
    ctr images import "$tar" >>"$LOG_DIR/$COMPONENT.log" 2>&1 || die "importing $tar failed"
  done
  log "images in the node: $(ctr images list --quiet | grep -c localhost/)"
}

start_controllers() {
  start_daemon kube-controller-manager "$LOG_DIR/kube-controller-manager.log" "$BIN/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" \
    --authorization-kubeconfig "$KUBECONFIG_FILE" --bind-address 127.0.0.1 --secure-port 20257 \
    --leader-elect=false --controllers '*' \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --horizontal-pod-autoscaler-sync-period 5s
  start_daemon kube-scheduler "$LOG_DIR/kube-scheduler.log" "$BIN/kube-scheduler" \
    --kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" \
    --authorization-kubeconfig "$KUBECONFIG_FILE" --bind-address 127.0.0.1 --secure-port 20259 \
    --leader-elect=false
}

start_kubelet() {
  write_kubelet_config
  start_daemon kubelet "$LOG_DIR/kubelet.log" "$BIN/kubelet" --config "$NODE/kubelet.yaml" \
    --kubeconfig "$KUBECONFIG_FILE" --root-dir "$KUBELET_ROOT" --hostname-override "$NODE_NAME" \
    --node-ip "$NODE_IP"
}

# Pod traffic to a Service that lands on a pod of the same bridge must pass iptables both ways (br_netfilter), and
# the node forwards between the bridge and its own address.
enable_forwarding() {
  sysctl -q -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 >/dev/null ||
    die "could not enable forwarding and bridge netfilter (sysctl)"
}

start_kube_proxy() {
  cat >"$NODE/kube-proxy.yaml" <<EOF
# Written by tools/k8s/node.sh.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $KUBECONFIG_FILE}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:20256
metricsBindAddress: 127.0.0.1:20249
# the host's conntrack table is left as it is
conntrack: {maxPerCore: 0}
EOF
  start_daemon kube-proxy "$LOG_DIR/kube-proxy.log" "$BIN/kube-proxy" --config "$NODE/kube-proxy.yaml"
}

start_coredns() {
  cat >"$NODE/Corefile" <<EOF
# Written by tools/k8s/node.sh: the cluster's names from the apiserver, the rest from the host's resolver.
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:20253
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_FILE notify-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 5
}
EOF
  start_daemon coredns "$LOG_DIR/coredns.log" "$BIN/coredns" -conf "$NODE/Corefile"
}

node_ready() {
  [[ $(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

cmd_start() {
  [[ $(id -u) == 0 ]] || die "the node needs root (containerd, runc, the CNI bridge)"
  [[ -n $NODE_IP ]] || die "no node address found: set NODE_IP"
  ensure_packages containerd runc containernetworking-plugins iptables conntrack
  "$HERE/build.sh" kube-controller-manager kube-scheduler kubelet kube-proxy coredns
  # fd 9 (the node lock) closed: etcd and kube-apiserver outlive this script
  K8S_ADVERTISE_ADDRESS="$NODE_IP" "$HERE/control-plane.sh" start 9>&-
  enable_forwarding
  start_containerd
  import_images
  start_controllers
  start_kube_proxy
  start_coredns
  start_kubelet
  local t0=$SECONDS
  until node_ready; do
    ((SECONDS - t0 < 120)) || die "node $NODE_NAME not Ready after 120 s (log $LOG_DIR/kubelet.log)"
    is_running kubelet || die "kubelet exited (log $LOG_DIR/kubelet.log)"
    sleep 1
  done
  log "node $NODE_NAME Ready ($NODE_IP, pods on $POD_CIDR) after $((SECONDS - t0)) s"
}

# What the kubelet leaves behind once it is gone: the pods' containers (their shims outlive containerd), the
# kubelet's mounts, the pod cgroups, the bridge.
clean_node() {
  local id m ctrl
  if [[ -S $SOCK ]] && ctr version >/dev/null 2>&1; then
    for id in $(ctr tasks list --quiet 2>/dev/null); do ctr tasks kill --signal SIGKILL "$id" >/dev/null 2>&1 || true; done
    sleep 1
    for id in $(ctr tasks list --quiet 2>/dev/null); do ctr tasks delete --force "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr containers list --quiet 2>/dev/null); do ctr containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  pkill -9 -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $SOCK" 2>/dev/null || true
  for m in $(findmnt -rn -o TARGET | grep -F -e "$KUBELET_ROOT" -e "$CTRD" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  for ctrl in /sys/fs/cgroup/*/; do
    [[ -d ${ctrl}kubepods ]] && find "${ctrl}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "$CTRD/cni-ipam"
}

cmd_stop() {
  stop_daemon kubelet
  clean_node
  stop_daemon coredns
  stop_daemon kube-proxy
  # kube-proxy's rules (its KUBE-* chains) go with it
  [[ -x $BIN/kube-proxy ]] && "$BIN/kube-proxy" --cleanup >>"$LOG_DIR/kube-proxy.log" 2>&1 || true
  stop_daemon containerd
  stop_daemon kube-scheduler
  stop_daemon kube-controller-manager
}

cmd_status() {
  local rc=0 p
  for p in "${PARTS[@]}"; do
    if is_running "$p"; then echo "$p: running (pid $(cat "$(pid_file "$p")"))"; else echo "$p: stopped"; rc=1; fi
  done
  if node_ready; then echo "node $NODE_NAME: Ready"; else echo "node $NODE_NAME: not Ready"; rc=1; fi
  return $rc
}

lock node
case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  import) import_images ;;
  *) echo "usage: $0 {start|stop|status|import}" >&2; exit 2 ;;
esac
