{{/* ---------------------------------------------------------------- names and labels */}}

{{- define "notify.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "notify.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "notify.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of one component's objects: notify.componentName (dict "ctx" $ "component" "api") */}}
{{- define "notify.componentName" -}}
{{- printf "%s-%s" (include "notify.fullname" .ctx | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{/* Selector labels of the whole release (every pod of it). */}}
{{- define "notify.releaseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "notify.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "api") */}}
{{- define "notify.selectorLabels" -}}
{{ include "notify.releaseSelectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every label of one component's objects: (dict "ctx" $ "component" "api") */}}
{{- define "notify.labels" -}}
helm.sh/chart: {{ include "notify.chart" .ctx }}
{{ include "notify.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: notify
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "notify.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "notify.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* A notify image: (dict "ctx" $ "image" .Values.api.image) */}}
{{- define "notify.image" -}}
{{- $registry := .ctx.Values.image.registry | trimSuffix "/" }}
{{- $repository := ternary (printf "%s/%s" $registry .image.repository) .image.repository (ne $registry "") }}
{{- if .image.digest }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.image.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- secrets */}}

{{/* The Secret the chart generates (admin token, embedded DB password, sandbox provider keys). */}}
{{- define "notify.generatedSecretName" -}}
{{- include "notify.componentName" (dict "ctx" . "component" "secrets") }}
{{- end }}

{{/* A value generated once: the one already in the live Secret if any (helm upgrade), else a new random one.
     (dict "ctx" $ "key" "admin-token" "length" 48) -> base64 */}}
{{- define "notify.generatedValue" -}}
{{- $live := lookup "v1" "Secret" .ctx.Release.Namespace (include "notify.generatedSecretName" .ctx) }}
{{- if and $live $live.data (hasKey $live.data .key) }}
{{- index $live.data .key }}
{{- else if eq (toString .length) "fernet" }}
{{- randBytes 32 | b64enc }}
{{- else }}
{{- randAlphaNum (int .length) | b64enc }}
{{- end }}
{{- end }}

{{- /* NOTIFY_MEDIA_SIGNING_KEY: signs the links a provider fetches uploaded media from (workers), checked by the API. */}}
{{- define "notify.mediaSigningEnv" -}}
- name: NOTIFY_MEDIA_SIGNING_KEY
  valueFrom:
    secretKeyRef:
{{- if .Values.mediaSigning.existingSecret }}
      name: {{ .Values.mediaSigning.existingSecret }}
      key: {{ .Values.mediaSigning.existingSecretKey }}
{{- else }}
      name: {{ include "notify.generatedSecretName" . }}
      key: media-signing-key
{{- end }}
{{- end }}

{{- /* The API's public address (operator.publicApiUrl, else the Ingress's first host): where providers fetch media. */}}
{{- define "notify.publicApiUrl" -}}
{{- if .Values.operator.publicApiUrl -}}
{{ .Values.operator.publicApiUrl }}
{{- else if .Values.api.ingress.enabled -}}
https://{{ (first .Values.api.ingress.hosts).host }}
{{- end -}}
{{- end }}

{{- /* WASENDER_WEBHOOK_SECRET: what WASender puts in X-Webhook-Signature (set the same in its session settings). */}}
{{- define "notify.wasenderWebhookEnv" -}}
- name: WASENDER_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
{{- if .Values.api.wasenderWebhook.existingSecret }}
      name: {{ .Values.api.wasenderWebhook.existingSecret }}
      key: {{ .Values.api.wasenderWebhook.existingSecretKey }}
{{- else }}
      name: {{ include "notify.generatedSecretName" . }}
      key: wasender-webhook-secret
{{- end }}
{{- end }}

{{- /* The API's WASender account (sites' WhatsApp sessions): the URL of the worker that sends through WASender. */}}
{{- define "notify.wasenderSessionsEnv" -}}
{{- range $channel, $entry := .Values.workers }}
{{- if eq (include "notify.workerProvider" (dict "channel" $channel "worker" $entry)) "wasender" }}
- name: WASENDER_API_URL
  value: {{ ternary (printf "%s/api" (include "notify.sandboxUrl" $)) $entry.wasender.apiUrl $.Values.sandbox.enabled | quote }}
{{- end }}
{{- end }}
{{- if .Values.api.wasenderSessions.existingSecret }}
- name: WASENDER_PERSONAL_ACCESS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.api.wasenderSessions.existingSecret }}
      key: {{ .Values.api.wasenderSessions.existingSecretKey }}
{{- end }}
{{- end }}

{{- /* NOTIFY_KEY_ENCRYPTION_KEYS: seals sites' own provider keys (API) and opens them (workers). */}}
{{- define "notify.keyEncryptionEnv" -}}
- name: NOTIFY_KEY_ENCRYPTION_KEYS
  valueFrom:
    secretKeyRef:
{{- if .Values.keyEncryption.existingSecret }}
      name: {{ .Values.keyEncryption.existingSecret }}
      key: {{ .Values.keyEncryption.existingSecretKey }}
{{- else }}
      name: {{ include "notify.generatedSecretName" . }}
      key: key-encryption-keys
{{- end }}
{{- end }}

{{- define "notify.adminTokenSecret" -}}
{{- if .Values.adminToken.existingSecret -}}
name: {{ .Values.adminToken.existingSecret }}
key: {{ .Values.adminToken.existingSecretKey }}
{{- else -}}
name: {{ include "notify.generatedSecretName" . }}
key: admin-token
{{- end }}
{{- end }}

{{- define "notify.postgresPasswordSecret" -}}
{{- if .Values.postgresql.embedded.existingSecret -}}
name: {{ .Values.postgresql.embedded.existingSecret }}
key: {{ .Values.postgresql.embedded.existingSecretKey }}
{{- else -}}
name: {{ include "notify.generatedSecretName" . }}
key: postgres-password
{{- end }}
{{- end }}

{{/* The key a generated provider API key has in the generated Secret: (the provider's name) */}}
{{- define "notify.generatedProviderKey" -}}
{{- printf "%s-api-key" . }}
{{- end }}

{{/* (dict "ctx" $ "provider" "sendgrid" "settings" $w.sendgrid) -> name/key of the provider's API key */}}
{{- define "notify.providerKeySecret" -}}
{{- if .settings.existingSecret -}}
name: {{ .settings.existingSecret }}
key: {{ .settings.existingSecretKey }}
{{- else -}}
name: {{ include "notify.generatedSecretName" .ctx }}
key: {{ include "notify.generatedProviderKey" .provider }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- Kafka and PostgreSQL */}}

{{- define "notify.kafkaHeadlessName" -}}
{{- include "notify.componentName" (dict "ctx" . "component" "kafka-headless") }}
{{- end }}

{{- define "notify.kafkaBootstrapServers" -}}
{{- if eq .Values.kafka.mode "embedded" }}
{{- /* Fully qualified: KEDA reads the lag from its own namespace. */}}
{{- printf "%s.%s.svc:9092" (include "notify.componentName" (dict "ctx" . "component" "kafka")) .Release.Namespace }}
{{- else }}
{{- .Values.kafka.external.bootstrapServers }}
{{- end }}
{{- end }}

{{- define "notify.kafkaSaslEnabled" -}}
{{- if and (eq .Values.kafka.mode "external") (hasPrefix "SASL_" .Values.kafka.external.securityProtocol) }}true{{ end }}
{{- end }}

{{- define "notify.kafkaTlsEnabled" -}}
{{- if and (eq .Values.kafka.mode "external") (has .Values.kafka.external.securityProtocol (list "SSL" "SASL_SSL")) }}true{{ end }}
{{- end }}

{{- define "notify.kafkaCaPath" -}}
{{- printf "/etc/notify/kafka-ca/%s" .Values.kafka.external.tls.caKey }}
{{- end }}

{{/* Environment of every Kafka client (api, workers, topics job). */}}
{{- define "notify.kafkaEnv" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ include "notify.kafkaBootstrapServers" . | quote }}
- name: NOTIFY_TOPIC_PREFIX
  value: {{ .Values.topicPrefix | quote }}
{{- if eq .Values.kafka.mode "external" }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.external.securityProtocol | quote }}
{{- if include "notify.kafkaSaslEnabled" . }}
- name: KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.external.sasl.mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ .Values.kafka.external.sasl.username | quote }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.external.sasl.existingSecret }}
      key: {{ .Values.kafka.external.sasl.existingSecretKey }}
{{- end }}
{{- if and (include "notify.kafkaTlsEnabled" .) .Values.kafka.external.tls.caSecret }}
- name: KAFKA_SSL_CA_LOCATION
  value: {{ include "notify.kafkaCaPath" . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The CA bundle volume (external Kafka over TLS with a private CA), and its mount. */}}
{{- define "notify.kafkaCaVolume" -}}
{{- if and (include "notify.kafkaTlsEnabled" .) .Values.kafka.external.tls.caSecret -}}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.external.tls.caSecret }}
    items:
      - key: {{ .Values.kafka.external.tls.caKey }}
        path: {{ .Values.kafka.external.tls.caKey }}
{{- end }}
{{- end }}

{{- define "notify.kafkaCaVolumeMount" -}}
{{- if and (include "notify.kafkaTlsEnabled" .) .Values.kafka.external.tls.caSecret -}}
- name: kafka-ca
  mountPath: /etc/notify/kafka-ca
  readOnly: true
{{- end }}
{{- end }}

{{/* Environment of every PostgreSQL client: DATABASE_URL (external) or the libpq PG* variables (embedded). */}}
{{- define "notify.databaseEnv" -}}
{{- if eq .Values.postgresql.mode "external" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.external.existingSecret }}
      key: {{ .Values.postgresql.external.existingSecretKey }}
{{- else -}}
- name: PGHOST
  value: {{ include "notify.componentName" (dict "ctx" . "component" "postgresql") | quote }}
- name: PGPORT
  value: "5432"
- name: PGDATABASE
  value: {{ .Values.postgresql.embedded.database | quote }}
- name: PGUSER
  value: {{ .Values.postgresql.embedded.username | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "notify.postgresPasswordSecret" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- pods */}}

{{- define "notify.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "notify.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* A writable /tmp for processes that need one under a read-only root filesystem. */}}
{{- define "notify.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "notify.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Prometheus scrape annotations: (dict "ctx" $ "port" 8080) */}}
{{- define "notify.scrapeAnnotations" -}}
{{- if .ctx.Values.metrics.scrapeAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* HTTP probes on the health routes: (dict "port" "http") */}}
{{- define "notify.httpProbes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}

{{/* ---------------------------------------------------------------- hooks */}}

{{/* Hook phases of a job that needs a backend: before install only if the backend already exists (external). */}}
{{- define "notify.hookPhases" -}}
{{- if eq . "external" }}pre-install,pre-upgrade{{ else }}post-install,pre-upgrade{{ end }}
{{- end }}

{{/* ---------------------------------------------------------------- channel workers

One entry of .Values.workers per channel (the entry's key). A worker's settings are its entry merged over
.Values.workerDefaults (maps key by key; the entry's scalars and lists win, a 0 or a false too), written out where
they are read: `$w := mergeOverwrite (deepCopy $.Values.workerDefaults) (deepCopy $entry)`. Not a helper: a helper
returns text, and the round trip through YAML or JSON would turn integers into floats. `enabled`, `image`,
`consumerGroup` and the provider's block live in the entry only. */}}

{{/* The channels whose worker is deployed, sorted: a JSON list (use with fromJsonArray). */}}
{{- define "notify.enabledWorkers" -}}
{{- $enabled := list }}
{{- range $channel, $entry := .Values.workers }}
{{- if $entry.enabled }}
{{- $enabled = append $enabled $channel }}
{{- end }}
{{- end }}
{{- toJson $enabled }}
{{- end }}

{{/* The providers a worker can deliver through: the key of the provider's block in a workers entry -> its name in
     messages. Each has its environment in "notify.providerEnv.<key>". */}}
{{- define "notify.providers" -}}
sendgrid: SendGrid
wasender: WASender
{{- end }}

{{/* The provider of one worker: the one provider block its entry holds. (dict "channel" "email" "worker" $entry) */}}
{{- define "notify.workerProvider" -}}
{{- $providers := include "notify.providers" . | fromYaml }}
{{- $found := list }}
{{- range $provider, $_ := $providers }}
{{- if hasKey $.worker $provider }}
{{- $found = append $found $provider }}
{{- end }}
{{- end }}
{{- if ne (len $found) 1 }}
{{- fail (printf "workers.%s must hold the block of exactly one provider (%s)" .channel (keys $providers | sortAlpha | join ", ")) }}
{{- end }}
{{- first $found }}
{{- end }}

{{/* SendGrid's settings of a worker: (dict "ctx" $ "settings" $w.sendgrid) */}}
{{- define "notify.providerEnv.sendgrid" -}}
- name: SENDGRID_API_URL
  value: {{ ternary (include "notify.sandboxUrl" .ctx) .settings.apiUrl .ctx.Values.sandbox.enabled | quote }}
- name: SENDGRID_FROM
  value: {{ .settings.from | quote }}
- name: SENDGRID_FROM_NAME
  value: {{ .settings.fromName | quote }}
- name: SENDGRID_REPLY_TO
  value: {{ .settings.replyTo | quote }}
- name: SENDGRID_API_KEY
  valueFrom:
    secretKeyRef:
      {{- include "notify.providerKeySecret" (dict "ctx" .ctx "provider" "sendgrid" "settings" .settings) | nindent 6 }}
{{- end }}

{{/* WASender's settings of a worker: (dict "ctx" $ "settings" $w.wasender); the sandbox serves its API under /api. */}}
{{- define "notify.providerEnv.wasender" -}}
- name: WASENDER_API_URL
  value: {{ ternary (printf "%s/api" (include "notify.sandboxUrl" .ctx)) .settings.apiUrl .ctx.Values.sandbox.enabled | quote }}
- name: WASENDER_API_KEY
  valueFrom:
    secretKeyRef:
      {{- include "notify.providerKeySecret" (dict "ctx" .ctx "provider" "wasender" "settings" .settings) | nindent 6 }}
{{- end }}

{{/* ---------------------------------------------------------------- render-time checks */}}

{{- define "notify.validate" -}}
{{- $partitions := int .Values.kafka.topics.partitions }}
{{- $providers := include "notify.providers" . | fromYaml }}
{{- $groups := dict }}
{{- $missing := list }}
{{- $switches := list }}
{{- range $channel, $entry := .Values.workers }}
{{- $w := mergeOverwrite (deepCopy $.Values.workerDefaults) (deepCopy $entry) }}
{{- $path := printf "workers.%s" $channel }}
{{- $switches = append $switches (printf "%s.enabled" $path) }}
{{- if and $w.enabled $.Values.keda.enabled (gt (int $w.autoscaling.maxReplicaCount) $partitions) }}
{{- fail (printf "%s.autoscaling.maxReplicaCount (%d) is above kafka.topics.partitions (%d): a consumer group never uses more consumers than its topic has partitions; lower maxReplicaCount or raise the partition count" $path (int $w.autoscaling.maxReplicaCount) $partitions) }}
{{- end }}
{{- if and $w.enabled $.Values.keda.enabled (gt (int $w.autoscaling.minReplicaCount) (int $w.autoscaling.maxReplicaCount)) }}
{{- fail (printf "%s.autoscaling.minReplicaCount is above its maxReplicaCount" $path) }}
{{- end }}
{{- if and $w.enabled $.Values.keda.enabled (gt (int $w.autoscaling.fallback.replicas) (int $w.autoscaling.maxReplicaCount)) }}
{{- fail (printf "%s.autoscaling.fallback.replicas is above its maxReplicaCount" $path) }}
{{- end }}
{{- if and $w.enabled (ge (int $w.shutdownGraceSeconds) (int $w.terminationGracePeriodSeconds)) }}
{{- fail (printf "%s.shutdownGraceSeconds must be below %s.terminationGracePeriodSeconds, or in-flight messages are killed mid-send" $path $path) }}
{{- end }}
{{- if $w.enabled }}
{{- with index $groups $w.consumerGroup }}
{{- fail (printf "workers.%s.consumerGroup and %s.consumerGroup must differ" . $path) }}
{{- end }}
{{- $_ := set $groups $w.consumerGroup $channel }}
{{- $provider := include "notify.workerProvider" (dict "channel" $channel "worker" $entry) }}
{{- if not (index $w $provider).existingSecret }}
{{- $missing = append $missing (printf "%s.%s.existingSecret (the %s API key)" $path $provider (index $providers $provider)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not .Values.sandbox.enabled) $missing }}
{{- fail (printf "sandbox.enabled is false (the default), so the workers deliver to the real providers: set %s, naming existing Secrets (a key is never a plain value), or turn a channel off (%s=false); or, to deliver to the built-in fake providers (dev, CI, helm test), install with --values charts/notify/ci/dev-values.yaml or --set sandbox.enabled=true" (join " and " $missing) (join " / " $switches)) }}
{{- end }}
{{- if eq .Values.kafka.mode "external" }}
{{- if not .Values.kafka.external.bootstrapServers }}
{{- fail "kafka.external.bootstrapServers is required when kafka.mode is external" }}
{{- end }}
{{- if include "notify.kafkaSaslEnabled" . }}
{{- if not .Values.kafka.external.sasl.mechanism }}
{{- fail (printf "kafka.external.sasl.mechanism is required with securityProtocol %s" .Values.kafka.external.securityProtocol) }}
{{- end }}
{{- if not .Values.kafka.external.sasl.username }}
{{- fail "kafka.external.sasl.username is required with a SASL security protocol" }}
{{- end }}
{{- if not .Values.kafka.external.sasl.existingSecret }}
{{- fail "kafka.external.sasl.existingSecret is required with a SASL security protocol (the password is never a plain value)" }}
{{- end }}
{{- end }}
{{- else }}
{{- if gt (int .Values.kafka.topics.replicationFactor) (int .Values.kafka.embedded.replicas) }}
{{- fail "kafka.topics.replicationFactor cannot be above kafka.embedded.replicas" }}
{{- end }}
{{- end }}
{{- if and (has "*" .Values.operator.watchNamespaces) (gt (len .Values.operator.watchNamespaces) 1) }}
{{- fail "operator.watchNamespaces: \"*\" (every namespace) stands alone: either [\"*\"] or a list of namespaces" }}
{{- end }}
{{- if and (eq .Values.postgresql.mode "external") (not .Values.postgresql.external.existingSecret) }}
{{- fail "postgresql.external.existingSecret is required when postgresql.mode is external (a Secret holding the DSN)" }}
{{- end }}
{{- end }}

{{/* The sandbox's base URL (both fake providers). */}}
{{- define "notify.sandboxUrl" -}}
{{- printf "http://%s:%d" (include "notify.componentName" (dict "ctx" . "component" "sandbox")) (int .Values.sandbox.port) }}
{{- end }}

{{/* KEDA's name for a SASL mechanism. */}}
{{- define "notify.kedaSasl" -}}
{{- $m := .Values.kafka.external.sasl.mechanism }}
{{- if eq $m "PLAIN" }}plaintext{{ else if eq $m "SCRAM-SHA-256" }}scram_sha256{{ else if eq $m "SCRAM-SHA-512" }}scram_sha512{{ end }}
{{- end }}

{{- define "notify.kedaAuthName" -}}
{{- include "notify.componentName" (dict "ctx" . "component" "kafka-auth") }}
{{- end }}

{{- define "notify.kedaAuthNeeded" -}}
{{- if or (include "notify.kafkaSaslEnabled" .) (and (include "notify.kafkaTlsEnabled" .) .Values.kafka.external.tls.caSecret) }}true{{ end }}
{{- end }}

{{/* ---------------------------------------------------------------- NetworkPolicy pieces */}}

{{- define "notify.netpolKafkaEgress" -}}
{{- if eq .Values.kafka.mode "embedded" -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "notify.selectorLabels" (dict "ctx" . "component" "kafka") | nindent 10 }}
  ports:
    - port: 9092
      protocol: TCP
{{- else -}}
- to:
    {{- toYaml .Values.networkPolicy.externalKafkaTo | nindent 4 }}
  ports:
    {{- range .Values.networkPolicy.kafkaPorts }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{- define "notify.netpolPostgresqlEgress" -}}
{{- if eq .Values.postgresql.mode "embedded" -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "notify.selectorLabels" (dict "ctx" . "component" "postgresql") | nindent 10 }}
  ports:
    - port: 5432
      protocol: TCP
{{- else -}}
- to:
    {{- toYaml .Values.networkPolicy.externalPostgresqlTo | nindent 4 }}
  ports:
    - port: {{ .Values.postgresql.external.port }}
      protocol: TCP
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- the operator */}}

{{/* Where mirrored FrappeSites go: empty value = the release namespace, "-" = no mirroring (empty string). */}}
{{- define "notify.operatorMirrorNamespace" -}}
{{- if eq .Values.operator.mirrorNamespace "-" }}{{ else }}{{ .Values.operator.mirrorNamespace | default .Release.Namespace }}{{ end }}
{{- end }}

{{/* Whether the operator watches every namespace: only when asked for with operator.watchNamespaces ["*"]. */}}
{{- define "notify.operatorClusterWide" -}}
{{- if has "*" .Values.operator.watchNamespaces }}true{{ end }}
{{- end }}

{{/* OPERATOR_NAMESPACES: "*", or the listed namespaces, or (empty list) the release namespace. */}}
{{- define "notify.operatorWatchNamespaces" -}}
{{- .Values.operator.watchNamespaces | default (list .Release.Namespace) | join "," }}
{{- end }}

{{/* The namespaces the operator watches (and needs namespaced rights in): the listed ones, else the release
     namespace, plus the mirror namespace (the operator adds it itself). Empty when it watches the whole cluster.
     JSON list. */}}
{{- define "notify.operatorNamespaces" -}}
{{- $namespaces := list }}
{{- if not (include "notify.operatorClusterWide" .) }}
{{- $namespaces = .Values.operator.watchNamespaces | default (list .Release.Namespace) }}
{{- $mirror := include "notify.operatorMirrorNamespace" . }}
{{- if and $mirror (not (has $mirror $namespaces)) }}
{{- $namespaces = append $namespaces $mirror }}
{{- end }}
{{- end }}
{{- toJson $namespaces }}
{{- end }}

{{/* Everything the operator calls in a namespace it watches, and nothing more: FrappeSites (kopf watches and
     patches them: finalizer, progress annotations, status), the Secrets holding the keys, and events on the
     FrappeSites.
     Secrets: `get` one by name (is it ours? does it hold the key?), `create` it, merge-`patch` it when it exists (a rotation, a lost key);
     never list or watch, so the operator cannot enumerate a namespace's Secrets. RBAC cannot narrow these by
     name: `create` never takes resourceNames, and the names are each FrappeSite's spec.secretName (default
     <name>-notify), known only when the FrappeSite is applied. So within a watched namespace the operator can
     read any Secret whose name it knows: watch namespaces that hold FrappeSites, not the whole cluster. */}}
{{- define "notify.operatorNamespacedRules" -}}
- apiGroups: ["notify.dev"]
  resources: ["frappesites"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["notify.dev"]
  resources: ["frappesites/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* In the mirror namespace only: creating the FrappeSites that mirror REST-registered sites. */}}
{{- define "notify.operatorMirrorRules" -}}
- apiGroups: ["notify.dev"]
  resources: ["frappesites"]
  verbs: ["create"]
{{- end }}
