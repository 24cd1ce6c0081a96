{{/* Names, labels, the env of the runtime and the start script of both roles. */}}

{{- define "cos-ray.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-cos-ray, or the release name alone when it already holds the chart name.
Truncated to 45 characters: a StatefulSet (<fullname>-worker) gives its pods a
controller-revision-hash label of its name and a 10-character hash, which must fit in 63. */}}
{{- define "cos-ray.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cos-ray.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The `app` label the runtime selects its pods by (COS_KUBERNETES_APP_LABEL). */}}
{{- define "cos-ray.appLabel" -}}
{{- default (include "cos-ray.fullname" .) .Values.appLabel }}
{{- end }}

{{- define "cos-ray.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cos-ray.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cos-ray.labels" -}}
helm.sh/chart: {{ include "cos-ray.chart" . }}
{{ include "cos-ray.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cos-ray.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cos-ray.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cos-ray.headlessName" -}}
{{- include "cos-ray.fullname" . }}-ray
{{- end }}

{{- define "cos-ray.clusterName" -}}
{{- include "cos-ray.fullname" . }}-cluster
{{- end }}

{{- define "cos-ray.readSidesName" -}}
{{- include "cos-ray.fullname" . }}-read-sides
{{- end }}

{{- define "cos-ray.databaseSecretName" -}}
{{- include "cos-ray.fullname" . }}-database
{{- end }}

{{/* host:port of the head's GCS, by the head pod's stable name in the headless service. */}}
{{- define "cos-ray.headAddress" -}}
{{- $fullname := include "cos-ray.fullname" . }}
{{- printf "%s-head-0.%s.%s.svc.%s:%d" $fullname (include "cos-ray.headlessName" .) .Release.Namespace .Values.clusterDomain (int .Values.ray.port) }}
{{- end }}

{{/* The database password's Secret, checked: exactly one of the two ways. */}}
{{- define "cos-ray.passwordSecretRef" -}}
{{- $db := .Values.database }}
{{- if and $db.existingSecret $db.password }}
{{- fail "database: give either database.existingSecret or database.password, not both" }}
{{- else if $db.existingSecret -}}
name: {{ $db.existingSecret }}
key: {{ $db.existingSecretKey }}
{{- else if $db.password -}}
name: {{ include "cos-ray.databaseSecretName" . }}
key: password
{{- else }}
{{- fail "database: the password is missing: set database.existingSecret (a Secret's name) or database.password" }}
{{- end }}
{{- end }}

{{/* Runtime settings the chart renders from other values, and which value sets each:
`config` may not set them again. */}}
{{- define "cos-ray.ownedSettings" -}}
COS_DEPLOYMENT_MODE: (always kubernetes)
COS_KUBERNETES_APP_LABEL: appLabel
COS_REPLICA_COUNT: replicas
COS_PORT: service.port
COS_HTTP_ENABLED: service.httpPort
COS_HTTP_PORT: service.httpPort
COS_SERVER_PROTOCOL: service.httpPort
COS_METRICS_PORT: service.metricsPort
COS_SUBSCRIPTION_PORT: service.subscriptionPort
COS_WRITE_SIDE_HOST: writeSide.host
COS_WRITE_SIDE_PORT: writeSide.port
COS_WRITE_SIDE_USE_TLS: writeSide.useTls
COS_WRITE_SIDE_TLS_CA_FILE: writeSide.tlsCaFile
COS_WRITE_SIDE_PROPAGATED_HEADERS: writeSide.propagatedHeaders
COS_WRITE_PERSISTED_HEADERS: writeSide.persistedHeaders
COS_WRITE_SIDE_PROTO_VALIDATION: writeSide.protoValidation
COS_WRITE_SIDE_EVENT_PROTOS: writeSide.eventProtos
COS_WRITE_SIDE_STATE_PROTOS: writeSide.stateProtos
COS_DB_HOST: database.host
COS_DB_PORT: database.port
COS_DB_NAME: database.name
COS_DB_USER: database.user
COS_DB_SCHEMA: database.schema
COS_DB_SSL_MODE: database.sslMode
COS_DB_PASSWORD: database.existingSecret or database.password
COS_RAY_GCS_RECONNECT_TIMEOUT_SECONDS: ray.gcsFaultTolerance.reconnectTimeoutSeconds
{{- if .Values.adminToken.existingSecret }}
COS_ADMIN_TOKEN: adminToken.existingSecret
{{- end }}
{{- if .Values.readSides }}
COS_READ_SIDE_ENABLED: readSides
COS_READ_SIDE_CONFIG: readSides
{{- end }}
{{- end }}

{{/* The container's environment; `role` is head or worker. */}}
{{- define "cos-ray.env" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $owned := include "cos-ray.ownedSettings" $root | fromYaml }}
{{- range $name, $value := $v.config }}
{{- if hasKey $owned $name }}
{{- fail (printf "config.%s: the chart sets %s itself; use %s" $name $name (get $owned $name)) }}
{{- end }}
{{- end -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
# Ray writes under $HOME; the root filesystem is read-only.
- name: HOME
  value: /tmp
- name: COS_DEPLOYMENT_MODE
  value: kubernetes
- name: COS_KUBERNETES_APP_LABEL
  value: {{ include "cos-ray.appLabel" $root | quote }}
- name: COS_REPLICA_COUNT
  valueFrom:
    configMapKeyRef:
      name: {{ include "cos-ray.clusterName" $root }}
      key: replicaCount
- name: COS_PORT
  value: {{ int $v.service.port | quote }}
{{- with $v.service.httpPort }}
- name: COS_HTTP_ENABLED
  value: "true"
- name: COS_HTTP_PORT
  value: {{ int . | quote }}
{{- end }}
{{- with $v.service.subscriptionPort }}
{{- if not (hasKey $v.config "COS_SUBSCRIPTION_ENABLED") }}
- name: COS_SUBSCRIPTION_ENABLED
  value: "true"
{{- end }}
- name: COS_SUBSCRIPTION_PORT
  value: {{ int . | quote }}
{{- end }}
{{- with $v.service.metricsPort }}
- name: COS_METRICS_PORT
  value: {{ int . | quote }}
{{- end }}
- name: COS_WRITE_SIDE_HOST
  value: {{ $v.writeSide.host | quote }}
- name: COS_WRITE_SIDE_PORT
  value: {{ int $v.writeSide.port | quote }}
- name: COS_WRITE_SIDE_USE_TLS
  value: {{ $v.writeSide.useTls | quote }}
{{- with $v.writeSide.tlsCaFile }}
- name: COS_WRITE_SIDE_TLS_CA_FILE
  value: {{ . | quote }}
{{- end }}
{{- with $v.writeSide.propagatedHeaders }}
- name: COS_WRITE_SIDE_PROPAGATED_HEADERS
  value: {{ join "," . | quote }}
{{- end }}
{{- with $v.writeSide.persistedHeaders }}
- name: COS_WRITE_PERSISTED_HEADERS
  value: {{ join "," . | quote }}
{{- end }}
- name: COS_WRITE_SIDE_PROTO_VALIDATION
  value: {{ $v.writeSide.protoValidation | quote }}
{{- with $v.writeSide.eventProtos }}
- name: COS_WRITE_SIDE_EVENT_PROTOS
  value: {{ join "," . | quote }}
{{- end }}
{{- with $v.writeSide.stateProtos }}
- name: COS_WRITE_SIDE_STATE_PROTOS
  value: {{ join "," . | quote }}
{{- end }}
- name: COS_DB_HOST
  value: {{ $v.database.host | quote }}
- name: COS_DB_PORT
  value: {{ int $v.database.port | quote }}
- name: COS_DB_NAME
  value: {{ $v.database.name | quote }}
- name: COS_DB_USER
  value: {{ $v.database.user | quote }}
- name: COS_DB_SCHEMA
  value: {{ $v.database.schema | quote }}
- name: COS_DB_SSL_MODE
  value: {{ $v.database.sslMode | quote }}
- name: COS_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "cos-ray.passwordSecretRef" $root | nindent 6 }}
{{- with $v.adminToken.existingSecret }}
- name: COS_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $v.adminToken.existingSecretKey }}
{{- end }}
{{- if $v.readSides }}
- name: COS_READ_SIDE_ENABLED
  value: "true"
- name: COS_READ_SIDE_CONFIG
  value: /etc/cos/read-sides
{{- end }}
{{- $ft := $v.ray.gcsFaultTolerance }}
- name: COS_RAY_GCS_RECONNECT_TIMEOUT_SECONDS
  value: {{ int $ft.reconnectTimeoutSeconds | quote }}
- name: RAY_gcs_rpc_server_reconnect_timeout_s
  value: {{ int $ft.reconnectTimeoutSeconds | quote }}
{{- if and (eq .role "head") $ft.redisAddress }}
- name: RAY_REDIS_ADDRESS
  value: {{ $ft.redisAddress | quote }}
- name: RAY_external_storage_namespace
  value: {{ printf "%s-%s" $root.Release.Namespace (include "cos-ray.fullname" $root) | quote }}
{{- with $ft.redisPasswordSecret.name }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $ft.redisPasswordSecret.key }}
{{- end }}
{{- end }}
{{- range $name, $value := $v.config }}
- name: {{ $name }}
  value: {{ include "cos-ray.scalar" $value | quote }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A value as text: YAML numbers reach templates as float64, which would print 4194304
as 4.194304e+06. */}}
{{- define "cos-ray.scalar" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* Shell single quotes around a text (for --system-config). */}}
{{- define "cos-ray.shellQuote" -}}
'{{ replace "'" "'\\''" . }}'
{{- end }}

{{/* The container's script: start the pod's Ray node, then become `cos serve`. `ray start`
returns once its daemons run; `exec` puts `cos serve` in the shell's place, so SIGTERM
reaches it, and it exits when its raylet dies. A worker first waits for the head's GCS. */}}
{{- define "cos-ray.startScript" -}}
{{- $v := .root.Values }}
{{- $resources := printf "--num-cpus=%d --object-store-memory=%d" (int $v.ray.numCpus) (int64 $v.ray.objectStoreMemory) -}}
{{- /* What the runtime does not use stays off (docs/architecture.md, "Processes"): usage
statistics, the dashboard, the autoscaler monitor; the log monitor, since the actors write
to cos serve's stderr themselves. */ -}}
set -e
{{- if eq .role "head" }}
ray start --head --node-ip-address="$POD_IP" --port={{ int $v.ray.port }} {{ $resources }} --disable-usage-stats --include-dashboard=false --no-monitor --include-log-monitor=false --system-config={{ include "cos-ray.shellQuote" (toJson $v.ray.systemConfig) }}
{{- if and $v.ray.gcsFaultTolerance.redisAddress $v.ray.gcsFaultTolerance.redisPasswordSecret.name }} --redis-password="$REDIS_PASSWORD"{{ end }}
{{- else }}
head="{{ include "cos-ray.headAddress" .root }}"
until python3 -c 'import socket, sys; host, port = sys.argv[1].rsplit(":", 1); socket.create_connection((host, int(port)), timeout=2).close()' "$head" 2>/dev/null; do
  echo "waiting for the Ray head at $head"
  sleep 2
done
ray start --address="$head" --node-ip-address="$POD_IP" {{ $resources }} --disable-usage-stats --include-log-monitor=false
{{- end }}
exec cos serve --address auto
{{- end }}

{{/* One exec probe running `cos health` with the given arguments. */}}
{{- define "cos-ray.probe" -}}
exec:
  command: {{ toJson .command }}
periodSeconds: {{ .timing.periodSeconds }}
timeoutSeconds: {{ .timing.timeoutSeconds }}
failureThreshold: {{ .timing.failureThreshold }}
{{- end }}
