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

{{/* A query Service's in-cluster URL, for its clients: (list $ "query") or (list $ "query-read") */}}
{{- define "streamwallet.queryUrl" -}}
{{- $root := index . 0 }}
{{- printf "http://%s.%s.svc:%s" (include "streamwallet.componentName" .) $root.Release.Namespace (include "streamwallet.int" $root.Values.query.port) }}
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
STREAMWALLET_AVRO_FRAMING: {{ .Values.schemaRegistry.framing | quote }}
STREAMWALLET_SCHEMA_REGISTRY_URL: {{ .Values.schemaRegistry.url | quote }}
STREAMWALLET_CLICKHOUSE_DSN: {{ .Values.clickhouse.dsn | quote }}
STREAMWALLET_CLICKHOUSE_DATABASE: {{ .Values.clickhouse.database | quote }}
STREAMWALLET_QUERY_PORT: {{ include "streamwallet.int" .Values.query.port | quote }}
STREAMWALLET_QUERY_URL: {{ include "streamwallet.queryUrl" (list . "query") | quote }}
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

{{/*
The store a query pod reads: (list $dsn $passwordSecret). Nothing when the DSN carries no
password (the ConfigMap's STREAMWALLET_CLICKHOUSE_DSN stands, or the caller sets it); with a
password Secret, the password as a variable from the Secret and the DSN with it spliced in
after the user (Kubernetes expands $(NAME) from variables defined before it).
*/}}
{{- define "streamwallet.clickhouseEnv" -}}
{{- $dsn := index . 0 }}
{{- $secret := index . 1 }}
{{- if $secret.name }}
{{- $url := urlParse $dsn }}
- name: CLICKHOUSE_PASSWORD_FROM_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret.name }}
      key: {{ $secret.key }}
- name: STREAMWALLET_CLICKHOUSE_DSN
  value: {{ printf "%s://%s:$(CLICKHOUSE_PASSWORD_FROM_SECRET)@%s%s%s" $url.scheme $url.userinfo $url.host $url.path (ternary (printf "?%s" $url.query) "" (ne $url.query "")) | quote }}
{{- end }}
{{- end }}

{{/*
The gateway's credential sources, each a key of a Secret mounted as a file:
name, Secret, setting, file name. The API key store's path is always set (a missing file is an
empty store); a JWT setting only when its Secret is given.
*/}}
{{- define "streamwallet.authSources" -}}
{{- $auth := .Values.gateway.auth }}
{{- $sources := list
  (list "api-keys" $auth.apiKeys.secret "STREAMWALLET_AUTH_API_KEYS_FILE" "api-keys.json")
  (list "jwt-hs256" $auth.jwt.hs256Secret "STREAMWALLET_AUTH_JWT_HS256_SECRET_FILE" "secret")
  (list "jwt-public-key" $auth.jwt.publicKeySecret "STREAMWALLET_AUTH_JWT_PUBLIC_KEY_FILE" "public.pem")
  (list "jwks" $auth.jwt.jwksSecret "STREAMWALLET_AUTH_JWKS_FILE" "jwks.json") }}
{{- toJson $sources }}
{{- end }}

{{- define "streamwallet.authEnv" -}}
{{- $auth := .Values.gateway.auth }}
{{- range $source := include "streamwallet.authSources" . | fromJsonArray }}
{{- if or (index $source 1).name (eq (index $source 0) "api-keys") }}
- name: {{ index $source 2 }}
  value: {{ printf "/etc/streamwallet/auth/%s/%s" (index $source 0) (index $source 3) }}
{{- end }}
{{- end }}
- name: STREAMWALLET_AUTH_JWT_AUDIENCE
  value: {{ $auth.jwt.audience | quote }}
- name: STREAMWALLET_AUTH_JWT_ISSUER
  value: {{ $auth.jwt.issuer | quote }}
- name: STREAMWALLET_AUTH_JWT_ROLES_CLAIM
  value: {{ $auth.jwt.rolesClaim | quote }}
- name: STREAMWALLET_AUTH_CLOCK_SKEW_S
  value: {{ include "streamwallet.int" $auth.jwt.clockSkewSeconds | quote }}
{{- end }}

{{- define "streamwallet.rateLimitEnv" -}}
- name: STREAMWALLET_GATEWAY_RATE_LIMIT_PER_S
  value: {{ include "streamwallet.int" .Values.gateway.rateLimit.perSecond | quote }}
- name: STREAMWALLET_GATEWAY_RATE_LIMIT_BURST
  value: {{ include "streamwallet.int" .Values.gateway.rateLimit.burst | quote }}
{{- end }}

{{- define "streamwallet.authVolumeMounts" -}}
{{- range $source := include "streamwallet.authSources" . | fromJsonArray }}
{{- if (index $source 1).name }}
- name: {{ printf "auth-%s" (index $source 0) }}
  mountPath: {{ printf "/etc/streamwallet/auth/%s" (index $source 0) }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* Whole Secret volumes, never subPath: Kubernetes then updates the files in place. */}}
{{- define "streamwallet.authVolumes" -}}
{{- range $source := include "streamwallet.authSources" . | fromJsonArray }}
{{- $secret := index $source 1 }}
{{- if $secret.name }}
- name: {{ printf "auth-%s" (index $source 0) }}
  secret:
    secretName: {{ $secret.name }}
    # Readable by the pod's group (podSecurityContext.fsGroup) only.
    defaultMode: 0440
    items:
      - key: {{ $secret.key }}
        path: {{ index $source 3 }}
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
{{- $registry := .Values.schemaRegistry }}
{{- if and (eq $registry.framing "confluent") (not $registry.url) }}
{{- fail "schemaRegistry.framing is confluent: set schemaRegistry.url, the registry that gives the schema ids" }}
{{- end }}
{{- include "streamwallet.validateClickhouse" (list "clickhouse.dsn" $dsn "clickhouse.passwordSecret" .Values.clickhouse.passwordSecret) }}
{{- $replicas := .Values.query.readReplicas }}
{{- if $replicas.enabled }}
{{- $replicaDsn := $replicas.clickhouseDsn | default $dsn }}
{{- if not (or (hasPrefix "http://" $replicaDsn) (hasPrefix "https://" $replicaDsn)) }}
{{- fail (printf "query.readReplicas needs a ClickHouse server (http(s)://host:8123), not %s: with embedded chDB only the query pod can open the store, and its SQL endpoint answers only clients in its own pod" $replicaDsn) }}
{{- end }}
{{- if $replicas.clickhouseDsn }}
{{- include "streamwallet.validateClickhouse" (list "query.readReplicas.clickhouseDsn" $replicas.clickhouseDsn "query.readReplicas.clickhousePasswordSecret" $replicas.clickhousePasswordSecret) }}
{{- else if $replicas.clickhousePasswordSecret.name }}
{{- fail "query.readReplicas.clickhousePasswordSecret is set without query.readReplicas.clickhouseDsn, which would ignore it: name the replicas' ClickHouse user in query.readReplicas.clickhouseDsn" }}
{{- end }}
{{- end }}
{{- $auth := .Values.gateway.auth }}
{{- $sources := 0 }}
{{- range $source := include "streamwallet.authSources" . | fromJsonArray }}
{{- if (index $source 1).name }}{{ $sources = add1 $sources }}{{ end }}
{{- end }}
{{- if and (eq $sources 0) (not $auth.allowNoCredentialSource) }}
{{- fail "gateway.auth: no credential source, so the gateway would answer 401 to every request. Give it the API key store (gateway.auth.apiKeys.secret.name) or a JWT key (gateway.auth.jwt.hs256Secret, .publicKeySecret or .jwksSecret): Secrets you create. To deploy it closed on purpose, set gateway.auth.allowNoCredentialSource=true" }}
{{- end }}
{{- /* Reached only with --skip-schema-validation: the schema's settings enum refuses these first. */}}
{{- $managed := list "bootstrap_servers" "topic_prefix" "partitions" "replication_factor" "min_insync_replicas" "kafka_security_protocol" "kafka_sasl_mechanism" "kafka_username" "kafka_password" "kafka_password_file" "kafka_ca_file" "avro_framing" "schema_registry_url" "worker_id" "data_dir" "worker_web_host" "worker_web_port" "clickhouse_dsn" "clickhouse_database" "query_host" "query_port" "query_url" "query_read_only" "sql_query_time_ms_max" "sql_memory_bytes_max" "sql_result_rows_max" "sql_result_bytes_max" "sql_threads_max" "gateway_host" "gateway_port" "gateway_rate_limit_per_s" "gateway_rate_limit_burst" "auth_api_keys_file" "auth_jwt_hs256_secret_file" "auth_jwt_public_key_file" "auth_jwks_file" "auth_jwt_audience" "auth_jwt_issuer" "auth_jwt_roles_claim" "auth_clock_skew_s" }}
{{- $refused := list }}
{{- range $field, $_ := .Values.settings }}
{{- if has $field $managed }}{{ $refused = append $refused $field }}{{ end }}
{{- end }}
{{- if $refused }}
{{- fail (printf "settings.%s: managed by the chart, set through its own values (kafka.*, schemaRegistry.*, clickhouse.*, query.*, gateway.*, worker.*; the chart README lists them)" (join ", settings." $refused)) }}
{{- end }}
{{- end }}

{{/* A ClickHouse DSN and its password Secret: (list "clickhouse.dsn" $dsn "clickhouse.passwordSecret" $secret) */}}
{{- define "streamwallet.validateClickhouse" -}}
{{- $dsnName := index . 0 }}
{{- $dsn := index . 1 }}
{{- $secretName := index . 2 }}
{{- $secret := index . 3 }}
{{- $server := or (hasPrefix "http://" $dsn) (hasPrefix "https://" $dsn) }}
{{- $userinfo := ternary (urlParse $dsn).userinfo "" $server }}
{{- if contains ":" $userinfo }}
{{- fail (printf "%s has a password in it, which would be stored in a ConfigMap: name only the user (http://user@host:8123) and put the password in a Secret, %s" $dsnName $secretName) }}
{{- end }}
{{- if $secret.name }}
{{- if not $server }}
{{- fail (printf "%s is set but %s is embedded chDB, which has no password: a ClickHouse server is http(s)://user@host:8123" $secretName $dsnName) }}
{{- end }}
{{- if not $userinfo }}
{{- fail (printf "%s is set but %s names no user: http(s)://user@host:8123" $secretName $dsnName) }}
{{- end }}
{{- end }}
{{- end }}
