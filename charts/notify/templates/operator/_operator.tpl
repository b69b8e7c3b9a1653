{{- /*
The kopf operator (FrappeSite custom resources) lives in this folder: its Deployment, ServiceAccount, RBAC and
CRD, rendered only when .Values.operator.enabled. Until it ships, notify.validate refuses operator.enabled=true.
*/}}
