#!/usr/bin/env bash
# A bare Kubernetes control plane on loopback for tests: etcd + kube-apiserver.
#
#   tools/k8s/control-plane.sh start    # build tools if needed, start, wait for /readyz
#   tools/k8s/control-plane.sh stop     # stop both (data is kept)
#   tools/k8s/control-plane.sh status   # exit 0 if running and ready
#   tools/k8s/control-plane.sh env      # eval "$(tools/k8s/control-plane.sh env)"
#   tools/k8s/control-plane.sh reset    # stop and wipe etcd data (fresh cluster next start)
#
# There is NO scheduler, controller-manager or kubelet: objects are stored,
# validated, defaulted, admitted (RBAC, admission plugins, CRD schemas) but
# nothing reconciles them (no pods for Deployments, no namespace finalization,
# no ServiceAccount/token controllers, no garbage collection). See README.md.
#
# Settings (environment): K8S_API_PORT (6443; remembered for later status/env),
# K8S_ETCD_PORT (2379; a free port is picked if busy), K8S_START_TIMEOUT (120 s),
# K8S_ADVERTISE_ADDRESS (empty: loopback only; tools/k8s/node.sh sets the node's address, so that pods reach the
# apiserver through the `kubernetes` Service: it then listens on every address and keeps that Service's endpoint).
# The aggregation layer is always configured (a front-proxy CA and client), for KEDA's metrics adapter.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$ROOT/.local/bin"
STATE="$ROOT/.local/k8s"
PKI="$STATE/pki"
LOGDIR="$ROOT/.local/log"
KUBECONFIG_FILE="$STATE/kubeconfig"
ETCD_LOG="$LOGDIR/etcd.log"
API_LOG="$LOGDIR/kube-apiserver.log"
# K8S_API_PORT wins; else the port of the last start; else 6443
API_PORT="${K8S_API_PORT:-$(cat "$STATE/apiserver.port" 2>/dev/null || echo 6443)}"
START_TIMEOUT="${K8S_START_TIMEOUT:-120}"
ADVERTISE="${K8S_ADVERTISE_ADDRESS:-}"
SERVICE_CIDR="10.96.0.0/16"   # config value only: nothing is routed
SA_ISSUER="https://kubernetes.default.svc.cluster.local"

log() { printf '[control-plane] %s\n' "$*" >&2; }

# --- process helpers -----------------------------------------------------------
# pid_of NAME: the pid recorded for NAME if that process is alive and is ours.
pid_of() {
  local f="$STATE/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$BIN/$1" || return 1
  echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p
  for p in $(seq "$1" $(( $1 + 200 ))); do
    port_busy "$p" || { echo "$p"; return 0; }
  done
  return 1
}

stop_one() {
  local name="$1" pid _
  pid="$(pid_of "$name")" || { rm -f "$STATE/$name.pid"; return 0; }
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not exit after 20s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/$name.pid"
}

fail_with_log() {
  local what="$1" logf="$2"
  log "FAILED: $what"
  log "log: $logf (last 40 lines below)"
  tail -n 40 "$logf" >&2 || true
  exit 1
}

# --- certificates --------------------------------------------------------------
gen_pki() {
  [ -f "$PKI/admin.crt" ] && [ -f "$PKI/sa.key" ] && return 0
  command -v openssl >/dev/null || { log "openssl is required"; exit 1; }
  log "generating CA, serving, admin client and service-account keys in $PKI"
  rm -rf "$PKI"; mkdir -p "$PKI"; chmod 700 "$PKI"
  (
    cd "$PKI"
    exec 2>openssl.log
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
      -subj "/CN=notify-local-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    # admin client certificate: group system:masters (bypasses RBAC, like kubeadm's admin)
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=notify-admin"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > client.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile client.ext -out admin.crt
    # service-account token signing key pair
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
    rm -f ./*.csr
  ) || { log "openssl failed: see $PKI/openssl.log"; exit 1; }
}

# The serving certificate: loopback, the in-cluster names of the apiserver and the advertised address, if any.
# Made again when the names it must carry change (a node started after a loopback-only run).
gen_serving_cert() {
  local sans="IP:127.0.0.1,IP:10.96.0.1${ADVERTISE:+,IP:$ADVERTISE},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  [ -f "$PKI/apiserver.crt" ] && [ "$(cat "$PKI/apiserver.sans" 2>/dev/null)" = "$sans" ] && return 0
  (
    cd "$PKI"
    exec 2>>openssl.log
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
      "$sans" > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt
    echo "$sans" > apiserver.sans
    rm -f apiserver.csr
  ) || { log "openssl failed: see $PKI/openssl.log"; exit 1; }
}

# The aggregation layer's front proxy: its own CA and the client certificate the apiserver shows an extension
# API server (KEDA's metrics adapter) when it forwards a request.
gen_front_proxy() {
  [ -f "$PKI/front-proxy-client.crt" ] && return 0
  (
    cd "$PKI"
    exec 2>>openssl.log
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout front-proxy-ca.key -out front-proxy-ca.crt \
      -subj "/CN=notify-local-front-proxy-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey rsa:2048 -nodes -keyout front-proxy-client.key -out front-proxy-client.csr \
      -subj "/CN=front-proxy-client"
    openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
      -CAcreateserial -days 3650 -extfile client.ext -out front-proxy-client.crt
    rm -f front-proxy-client.csr
  ) || { log "openssl failed: see $PKI/openssl.log"; exit 1; }
}

write_kubeconfig() {
  local b64="base64 -w0"
  cat > "$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: notify-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $($b64 < "$PKI/ca.crt")
users:
- name: notify-admin
  user:
    client-certificate-data: $($b64 < "$PKI/admin.crt")
    client-key-data: $($b64 < "$PKI/admin.key")
contexts:
- name: notify-local
  context:
    cluster: notify-local
    user: notify-admin
    namespace: default
current-context: notify-local
EOF
  chmod 600 "$KUBECONFIG_FILE.tmp"
  mv -f "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

readyz() {
  curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

etcd_healthy() {
  local port; port="$(cat "$STATE/etcd.port" 2>/dev/null)" || return 1
  curl -fsS --max-time 3 "http://127.0.0.1:$port/health" 2>/dev/null | grep -q '"health":"true"'
}

# --- start -----------------------------------------------------------------------
start_etcd() {
  if pid_of etcd >/dev/null && etcd_healthy; then return 0; fi
  stop_one etcd
  local port peer extra=()
  port="${K8S_ETCD_PORT:-2379}"
  port_busy "$port" && port="$(free_port 23790)"
  peer="$(free_port $(( port + 1 )))"
  echo "$port" > "$STATE/etcd.port"
  mkdir -p "$STATE/etcd"; chmod 700 "$STATE/etcd"
  # tests do not need durability: skip fsync when this etcd supports it
  "$BIN/etcd" --help 2>&1 | grep -q -- '--unsafe-no-fsync' && extra+=(--unsafe-no-fsync)
  log "starting etcd on 127.0.0.1:$port (data $STATE/etcd, log $ETCD_LOG)"
  echo "=== $(date -u +%FT%TZ) start" >> "$ETCD_LOG"
  setsid nohup "$BIN/etcd" \
    --name notify-local \
    --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$port" \
    --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "notify-local=http://127.0.0.1:$peer" \
    --log-level warn \
    "${extra[@]}" \
    >> "$ETCD_LOG" 2>&1 < /dev/null &
  echo $! > "$STATE/etcd.pid"
  local _
  for _ in $(seq 1 150); do
    etcd_healthy && return 0
    pid_of etcd >/dev/null || fail_with_log "etcd exited" "$ETCD_LOG"
    sleep 0.2
  done
  fail_with_log "etcd not healthy after 30s" "$ETCD_LOG"
}

start_apiserver() {
  if pid_of kube-apiserver >/dev/null && readyz && [ "$(cat "$STATE/apiserver.advertise" 2>/dev/null)" = "$ADVERTISE" ]; then
    return 0
  fi
  stop_one kube-apiserver
  local listen=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
  [ -n "$ADVERTISE" ] && listen=(--bind-address 0.0.0.0 --advertise-address "$ADVERTISE" --endpoint-reconciler-type lease)
  if port_busy "$API_PORT"; then
    log "port 127.0.0.1:$API_PORT is in use by another process: set K8S_API_PORT"
    exit 1
  fi
  local etcd_port; etcd_port="$(cat "$STATE/etcd.port")"
  echo "$API_PORT" > "$STATE/apiserver.port"
  echo "$ADVERTISE" > "$STATE/apiserver.advertise"
  log "starting kube-apiserver on https://${ADVERTISE:-127.0.0.1}:$API_PORT (log $API_LOG)"
  echo "=== $(date -u +%FT%TZ) start" >> "$API_LOG"
  setsid nohup "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    "${listen[@]}" \
    --secure-port "$API_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" \
    --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --authorization-mode RBAC \
    --anonymous-auth=false \
    --service-account-issuer "$SA_ISSUER" \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --allow-privileged=true \
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy \
    --cert-dir "$STATE/apiserver-certs" \
    --kubelet-client-certificate "$PKI/admin.crt" \
    --kubelet-client-key "$PKI/admin.key" \
    --kubelet-preferred-address-types InternalIP \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
    --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=true \
    --profiling=false \
    >> "$API_LOG" 2>&1 < /dev/null &
  echo $! > "$STATE/kube-apiserver.pid"
  local t0=$SECONDS
  while (( SECONDS - t0 < START_TIMEOUT )); do
    readyz && { log "kube-apiserver ready after $((SECONDS - t0))s"; return 0; }
    pid_of kube-apiserver >/dev/null || fail_with_log "kube-apiserver exited" "$API_LOG"
    sleep 0.5
  done
  fail_with_log "kube-apiserver not ready after ${START_TIMEOUT}s (/readyz)" "$API_LOG"
}

cmd_start() {
  mkdir -p "$STATE" "$LOGDIR"
  # idempotent and fast when the binaries are already in .local/bin
  "$HERE/build.sh" etcd kube-apiserver kubectl
  gen_pki
  gen_serving_cert
  gen_front_proxy
  start_etcd
  write_kubeconfig
  start_apiserver
  log "ready: export KUBECONFIG=$KUBECONFIG_FILE"
}

cmd_stop() {
  stop_one kube-apiserver
  stop_one etcd
}

cmd_status() {
  local rc=0 p
  if p="$(pid_of etcd)"; then
    if etcd_healthy; then echo "etcd: running (pid $p, 127.0.0.1:$(cat "$STATE/etcd.port"))"
    else echo "etcd: running (pid $p) but not healthy"; rc=1; fi
  else echo "etcd: stopped"; rc=1; fi
  if p="$(pid_of kube-apiserver)"; then
    if readyz; then echo "kube-apiserver: ready (pid $p, https://127.0.0.1:$API_PORT)"
    else echo "kube-apiserver: running (pid $p) but not ready"; rc=1; fi
  else echo "kube-apiserver: stopped"; rc=1; fi
  echo "kubeconfig: $KUBECONFIG_FILE"
  return $rc
}

cmd_env() {
  echo "export KUBECONFIG=\"$KUBECONFIG_FILE\""
  echo "export PATH=\"$BIN:\$PATH\""
}

case "${1:-}" in
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  status) cmd_status ;;
  env)    cmd_env ;;
  reset)  cmd_stop; rm -rf "$STATE/etcd"; log "etcd data wiped" ;;
  *) echo "usage: $0 {start|stop|status|env|reset}" >&2; exit 2 ;;
esac
