#!/usr/bin/env bash
# Prometheus and kube-state-metrics beside the node (tools/k8s/node.sh), as host processes with the admin
# kubeconfig: the dashboards' data source for the node e2e.
#
#   tools/k8s/prometheus.sh start    # build (once) and start both; Prometheus on http://127.0.0.1:20290
#   tools/k8s/prometheus.sh stop
#   tools/k8s/prometheus.sh url      # print Prometheus' address
#
# Scraped every 5 s: every pod that asks for it by the usual annotations (prometheus.io/scrape, /port, /path: the
# chart's pods do), KEDA's operator (its metrics port, namespace keda) and kube-state-metrics. A target's
# namespace is the pod's; a series' own `namespace` label (KEDA's) becomes `exported_namespace`, as with the
# Prometheus Operator. The TSDB is thrown away on stop.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
COMPONENT=prometheus
# shellcheck source=scripts/common.sh
. "$HERE/../../scripts/common.sh"

BIN="$LOCAL/bin"
KUBECONFIG_FILE="$LOCAL/k8s/kubeconfig"
STATE="$LOCAL/prometheus"
PORT=20290
KSM_PORT=20280

write_config() {
  mkdir -p "$STATE"
  cat >"$STATE/prometheus.yml" <<YAML
# Written by tools/k8s/prometheus.sh.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: pods
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: $KUBECONFIG_FILE
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        action: keep
        regex: "true"
      - source_labels: [__meta_kubernetes_pod_phase]
        action: keep
        regex: Running
      - source_labels: [__meta_kubernetes_pod_ip, __meta_kubernetes_pod_annotation_prometheus_io_port]
        regex: (.+);(\\d+)
        replacement: \$1:\$2
        target_label: __address__
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
        regex: (.+)
        target_label: __metrics_path__
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_component]
        target_label: component
  - job_name: keda-operator
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: $KUBECONFIG_FILE
        namespaces: {names: [keda]}
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_label_app, __meta_kubernetes_pod_container_port_number]
        action: keep
        regex: keda-operator;8080
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
  - job_name: kube-state-metrics
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:$KSM_PORT"]
YAML
}

ready() { curl -fsS --max-time 2 "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1; }

cmd_start() {
  "$HERE/build.sh" prometheus kube-state-metrics
  write_config
  start_daemon kube-state-metrics "$LOG_DIR/kube-state-metrics.log" "$BIN/kube-state-metrics" \
    --kubeconfig "$KUBECONFIG_FILE" --host 127.0.0.1 --port "$KSM_PORT" --telemetry-host 127.0.0.1 \
    --telemetry-port $((KSM_PORT + 1)) --resources deployments,horizontalpodautoscalers,pods,statefulsets,jobs
  rm -rf "$STATE/data"
  start_daemon prometheus "$LOG_DIR/prometheus.log" "$BIN/prometheus" --config.file "$STATE/prometheus.yml" \
    --storage.tsdb.path "$STATE/data" --web.listen-address "127.0.0.1:$PORT" --log.level warn
  for _ in $(seq 120); do ready && { log "Prometheus ready on http://127.0.0.1:$PORT"; return; }; sleep 0.5; done
  die "Prometheus not ready on 127.0.0.1:$PORT (log $LOG_DIR/prometheus.log)"
}

case "${1:-}" in
  start) lock prometheus && cmd_start ;;
  stop) lock prometheus && stop_daemon prometheus && stop_daemon kube-state-metrics ;;
  url) echo "http://127.0.0.1:$PORT" ;;
  *) echo "usage: $0 {start|stop|url}" >&2; exit 2 ;;
esac
