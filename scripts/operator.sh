#!/usr/bin/env bash
# The FrappeSite operator, locally, in the foreground (Ctrl-C stops it): against the loopback kube-apiserver of
# tools/k8s (started if needed) and the local stack's API (`task up` first). The CRD is the chart's own; it watches
# every namespace of this throwaway cluster (OPERATOR_NAMESPACES=*, set it to narrow), and mirrored FrappeSites go
# to the namespace `notify`. Then, in another shell:
#   eval "$(bash tools/k8s/control-plane.sh env)"
#   kubectl create namespace erp; kubectl apply -n erp -f examples/frappesite.yaml; kubectl get frappesites -A
set -euo pipefail
COMPONENT=operator
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/stack.env
source "$ROOT/scripts/stack.env"

curl -fsS -o /dev/null "http://127.0.0.1:${API_PORT:-8080}/healthz" || die "the local API is not up: run \`task up\` first"
bash "$ROOT/tools/k8s/build.sh" helm >&2
bash "$ROOT/tools/k8s/control-plane.sh" start >&2
eval "$(bash "$ROOT/tools/k8s/control-plane.sh" env)"
"$ROOT/.local/bin/helm" template notify "$ROOT/charts/notify" --set operator.enabled=true \
  --show-only templates/operator/crd.yaml | kubectl apply --server-side --force-conflicts -f - >&2
kubectl wait --for condition=Established --timeout=60s crd/frappesites.notify.dev >&2
kubectl get namespace notify >/dev/null 2>&1 || kubectl create namespace notify >&2
log "running against $KUBECONFIG; health and metrics on http://127.0.0.1:8083"
cd "$ROOT"
export NOTIFY_API_URL="http://127.0.0.1:${API_PORT:-8080}" OPERATOR_MIRROR_NAMESPACE=notify OPERATOR_HTTP_PORT=8083
export OPERATOR_NAMESPACES="${OPERATOR_NAMESPACES:-*}"
exec "$ROOT/.venv/bin/python" -m functions.operator
