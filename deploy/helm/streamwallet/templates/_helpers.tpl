{{/*
Names. Component objects are <fullname>-<component>; the fullname is cut to 40 characters so
that StatefulSet pod names and their controller-revision-hash labels stay within 63.
*/}}
{{- define "streamwallet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "streamwallet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* (list $ "worker") -> <fullname>-worker */}}
{{- define "streamwallet.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "streamwallet.fullname" $root) (index . 1) }}
{{- end }}

{{- define "streamwallet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* (list $ "worker") -> selector labels of a component */}}
{{- define "streamwallet.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "streamwallet.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* (list $ "worker") -> all labels of a component's objects */}}
{{- define "streamwallet.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "streamwallet.chart" $root }}
{{ include "streamwallet.selectorLabels" . }}
app.kubernetes.io/part-of: streamwallet
app.kubernetes.io/version: {{ $root.Values.image.tag | default $root.Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "streamwallet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "streamwallet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamwallet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "streamwallet.configMapName" -}}
{{- include "streamwallet.componentName" (list . "config") }}
{{- end }}

{{/* The query service's in-cluster host name, for its clients (the gateway). */}}
{{- define "streamwallet.queryServiceHost" -}}
{{- printf "%s.%s.svc" (include "streamwallet.componentName" (list . "query")) .Release.Namespace }}
{{- end }}

{{- define "streamwallet.embeddedChdb" -}}
{{- if hasPrefix "chdb://" .Values.clickhouse.dsn }}true{{ end }}
{{- end }}

{{/* A number from values (float64 from YAML files, int64 from --set) as a plain integer. */}}
{{- define "streamwallet.int" -}}
{{- . | int64 }}
{{- end }}

{{/* A settings value as the text of an environment variable. */}}
{{- define "streamwallet.envText" -}}
{{- if kindIs "float64" . }}
{{- if eq (. | int64 | float64) . }}{{ . | int64 }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
The settings shared by every process, as STREAMWALLET_* variables: the ConfigMap's data, and
the topics hook job's env (a hook runs before the ConfigMap exists).
*/}}
{{- define "streamwallet.configData" -}}
STREAMWALLET_BOOTSTRAP_SERVERS: {{ required "kafka.bootstrapServers is required: the brokers of your Kafka cluster" .Values.kafka.bootstrapServers | quote }}
STREAMWALLET_TOPIC_PREFIX: {{ .Values.kafka.topicPrefix | quote }}
STREAMWALLET_PARTITIONS: {{ include "streamwallet.int" .Values.kafka.partitions | quote }}
STREAMWALLET_REPLICATION_FACTOR: {{ include "streamwallet.int" .Values.kafka.replicationFactor | quote }}
STREAMWALLET_MIN_INSYNC_REPLICAS: {{ include "streamwallet.int" .Values.kafka.minInsyncReplicas | quote }}
STREAMWALLET_KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.security.protocol | quote }}
STREAMWALLET_KAFKA_SASL_MECHANISM: {{ .Values.kafka.security.saslMechanism | quote }}
STREAMWALLET_CLICKHOUSE_DSN: {{ .Values.clickhouse.dsn | quote }}
STREAMWALLET_CLICKHOUSE_DATABASE: {{ .Values.clickhouse.database | quote }}
STREAMWALLET_QUERY_PORT: {{ include "streamwallet.int" .Values.query.port | quote }}
STREAMWALLET_QUERY_URL: {{ printf "http://%s:%s" (include "streamwallet.queryServiceHost" .) (include "streamwallet.int" .Values.query.port) | quote }}
STREAMWALLET_GATEWAY_PORT: {{ include "streamwallet.int" .Values.gateway.port | quote }}
{{- range $field, $value := .Values.settings }}
{{ printf "STREAMWALLET_%s" (upper $field) }}: {{ include "streamwallet.envText" $value | quote }}
{{- end }}
{{- end }}

{{/*
A component's Kafka user (with SASL_SSL): its name, its password as a file from its Secret,
and the CA file. (list $ "worker"): the env entries, then kafkaVolumeMounts and kafkaVolumes.
*/}}
{{- define "streamwallet.kafkaUserEnv" -}}
{{- $security := (index . 0).Values.kafka.security }}
{{- if eq $security.protocol "SASL_SSL" }}
{{- $user := index $security.users (index . 1) }}
- name: STREAMWALLET_KAFKA_USERNAME
  value: {{ $user.username | quote }}
- name: STREAMWALLET_KAFKA_PASSWORD_FILE
  value: /etc/streamwallet/kafka-user/password
{{- if $security.caSecret.name }}
- name: STREAMWALLET_KAFKA_CA_FILE
  value: /etc/streamwallet/kafka-ca/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{- define "streamwallet.kafkaVolumeMounts" -}}
{{- $security := (index . 0).Values.kafka.security }}
{{- if eq $security.protocol "SASL_SSL" }}
- name: kafka-user
  mountPath: /etc/streamwallet/kafka-user
  readOnly: true
{{- if $security.caSecret.name }}
- name: kafka-ca
  mountPath: /etc/streamwallet/kafka-ca
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "streamwallet.kafkaVolumes" -}}
{{- $security := (index . 0).Values.kafka.security }}
{{- if eq $security.protocol "SASL_SSL" }}
{{- $user := index $security.users (index . 1) }}
- name: kafka-user
  secret:
    secretName: {{ $user.passwordSecret.name }}
    # Readable by the pod's group (podSecurityContext.fsGroup) only.
    defaultMode: 0440
    items:
      - key: {{ $user.passwordSecret.key }}
        path: password
{{- if $security.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ $security.caSecret.name }}
    defaultMode: 0444
    items:
      - key: {{ $security.caSecret.key }}
        path: ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level fields shared by every component: (list $ .Values.worker) */}}
{{- define "streamwallet.podCommon" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 -}}
serviceAccountName: {{ include "streamwallet.serviceAccountName" $root }}
automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
enableServiceLinks: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
terminationGracePeriodSeconds: {{ include "streamwallet.int" $component.terminationGracePeriodSeconds }}
{{- with $component.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $component.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* affinity: the component's own, or anti-affinity across nodes by preset: (list $ .Values.worker "worker") */}}
{{- define "streamwallet.affinity" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $name := index . 2 }}
{{- if $component.affinity -}}
affinity:
  {{- toYaml $component.affinity | nindent 2 }}
{{- else if eq $component.podAntiAffinity "soft" -}}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "streamwallet.selectorLabels" (list $root $name) | nindent 14 }}
{{- else if eq $component.podAntiAffinity "hard" -}}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "streamwallet.selectorLabels" (list $root $name) | nindent 12 }}
{{- end }}
{{- end }}

{{/* HTTP probes on the "http" port: (list .Values.worker.probes) */}}
{{- define "streamwallet.probes" -}}
{{- with .startup }}
startupProbe:
  httpGet:
    path: /health
    port: http
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .liveness }}
livenessProbe:
  httpGet:
    path: /health
    port: http
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .readiness }}
readinessProbe:
  httpGet:
    path: /ready
    port: http
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A volumeClaimTemplate named "data": (list $ .Values.worker.persistence "worker") */}}
{{- define "streamwallet.volumeClaimTemplate" -}}
{{- $root := index . 0 }}
{{- $persistence := index . 1 -}}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata:
    name: data
    labels:
      {{- include "streamwallet.selectorLabels" (list $root (index . 2)) | nindent 6 }}
  spec:
    accessModes:
      {{- toYaml $persistence.accessModes | nindent 6 }}
    {{- with $persistence.storageClass }}
    {{- if eq . "-" }}
    storageClassName: ""
    {{- else }}
    storageClassName: {{ . | quote }}
    {{- end }}
    {{- end }}
    resources:
      requests:
        storage: {{ $persistence.size | quote }}
{{- end }}

{{/*
Checks the schema cannot express (or states them again with a clearer message).
*/}}
{{- define "streamwallet.validate" -}}
{{- $partitions := .Values.kafka.partitions | int64 }}
{{- if gt (.Values.kafka.minInsyncReplicas | int64) (.Values.kafka.replicationFactor | int64) }}
{{- fail (printf "kafka.minInsyncReplicas (%v) must be at most kafka.replicationFactor (%v)" .Values.kafka.minInsyncReplicas .Values.kafka.replicationFactor) }}
{{- end }}
{{- if gt (.Values.worker.replicas | int64) $partitions }}
{{- fail (printf "worker.replicas (%v) must be at most kafka.partitions (%v): a worker without a partition only idles" .Values.worker.replicas .Values.kafka.partitions) }}
{{- end }}
{{- $dsn := .Values.clickhouse.dsn }}
{{- if hasPrefix "chdb://" $dsn }}
{{- if ne (.Values.query.replicas | int64) 1 }}
{{- fail (printf "query.replicas is %v but clickhouse.dsn is embedded chDB (%s): only ONE process may open a chDB folder, so query.replicas must be 1. Use a ClickHouse server (clickhouse.dsn=http://host:8123) to scale the query service out." .Values.query.replicas $dsn) }}
{{- end }}
{{- if not (hasPrefix "chdb:///data/" $dsn) }}
{{- fail (printf "clickhouse.dsn %s: an embedded chDB folder must be under /data (the query pod's volume), e.g. chdb:///data/clickhouse" $dsn) }}
{{- end }}
{{- else if not (or (hasPrefix "http://" $dsn) (hasPrefix "https://" $dsn)) }}
{{- fail (printf "clickhouse.dsn %s: expected chdb:///data/<folder> or http(s)://host:port" $dsn) }}
{{- end }}
{{- $security := .Values.kafka.security }}
{{- $components := list "worker" "query" "gateway" }}
{{- if .Values.topics.create }}{{ $components = append $components "topics" }}{{ end }}
{{- range $component := $components }}
{{- $user := index $security.users $component }}
{{- if eq $security.protocol "SASL_SSL" }}
{{- if not (and $user.username $user.passwordSecret.name) }}
{{- fail (printf "kafka.security.protocol is SASL_SSL: set kafka.security.users.%s.username and kafka.security.users.%s.passwordSecret.name (a Secret holding its password)" $component $component) }}
{{- end }}
{{- else if or $user.username $user.passwordSecret.name }}
{{- fail (printf "kafka.security.users.%s is set but kafka.security.protocol is PLAINTEXT, which would ignore it: set kafka.security.protocol=SASL_SSL" $component) }}
{{- end }}
{{- end }}
{{- if and (ne $security.protocol "SASL_SSL") $security.caSecret.name }}
{{- fail "kafka.security.caSecret is set but kafka.security.protocol is PLAINTEXT, which would ignore it: set kafka.security.protocol=SASL_SSL" }}
{{- end }}
{{- $managed := list "bootstrap_servers" "topic_prefix" "partitions" "replication_factor" "min_insync_replicas" "worker_id" "data_dir" "clickhouse_dsn" "clickhouse_database" "query_host" "query_port" "query_url" "gateway_host" "gateway_port" "worker_web_host" "worker_web_port" "kafka_security_protocol" "kafka_sasl_mechanism" "kafka_username" "kafka_password" "kafka_password_file" "kafka_ca_file" }}
{{- range $field, $_ := .Values.settings }}
{{- if has $field $managed }}
{{- fail (printf "settings.%s is managed by the chart: set it through its own value (kafka.*, clickhouse.*, query.*, gateway.*, worker.*)" $field) }}
{{- end }}
{{- end }}
{{- end }}
