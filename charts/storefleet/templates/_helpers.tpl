{{/* Name of the release's objects: <release>-storefleet, or the release name if it says so. */}}
{{- define "storefleet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "storefleet" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-storefleet" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "storefleet.labels" -}}
app.kubernetes.io/name: storefleet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "storefleet.operator.selectorLabels" -}}
app.kubernetes.io/name: storefleet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "storefleet.operator.name" -}}
{{- printf "%s-operator" (include "storefleet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "storefleet.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "storefleet.operator.name" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Secret with STOREFLEET_PG_DSN, STOREFLEET_REDIS_URL, STOREFLEET_KAFKA_BOOTSTRAP, ... */}}
{{- define "storefleet.endpointsSecret" -}}
{{- default (printf "%s-endpoints" (include "storefleet.fullname" .)) .Values.endpointsSecret -}}
{{- end -}}

{{- define "storefleet.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "storefleet.componentName" -}}
{{- printf "%s-%s" (include "storefleet.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a component; call with (dict "root" $ "component" "webhook"). */}}
{{- define "storefleet.componentSelectorLabels" -}}
app.kubernetes.io/name: storefleet
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "storefleet.componentLabels" -}}
{{ include "storefleet.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
A credential, generated once: the value already in the Secret `name` (helm lookup, so upgrades
keep it), else a new randAlphaNum. Memoised per render so every template that needs it (the
component's Secret and the endpoints Secret) gets the same value.
Call with (dict "root" $ "name" secretName "key" key).
*/}}
{{- define "storefleet.generatedSecret" -}}
{{- $cache := .root.Values.__storefleetGenerated | default dict -}}
{{- $id := printf "%s/%s" .name .key -}}
{{- if not (hasKey $cache $id) -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- $value := "" -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- $value = index $existing.data .key | b64dec -}}
{{- else -}}
{{- $value = randAlphaNum 32 -}}
{{- end -}}
{{- $_ := set $cache $id $value -}}
{{- $_ := set .root.Values "__storefleetGenerated" $cache -}}
{{- end -}}
{{- index $cache $id -}}
{{- end -}}

{{/* A value of an existing (user's) Secret; empty when it cannot be read (helm template). */}}
{{- define "storefleet.existingSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- end -}}
{{- end -}}

{{/* Percent-encode a credential for the user-info part of a URL. */}}
{{- define "storefleet.urlCredential" -}}
{{- . | urlquery | replace "+" "%20" -}}
{{- end -}}

{{/* Secret name and key holding the bundled PostgreSQL password. */}}
{{- define "storefleet.postgresql.secretName" -}}
{{- default (include "storefleet.componentName" (dict "root" . "component" "postgresql")) .Values.postgresql.auth.existingSecret -}}
{{- end -}}

{{- define "storefleet.redis.secretName" -}}
{{- default (include "storefleet.componentName" (dict "root" . "component" "redis")) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{- define "storefleet.webhook.secretName" -}}
{{- default (include "storefleet.componentName" (dict "root" . "component" "webhook")) .Values.webhook.auth.existingSecret -}}
{{- end -}}

{{- define "storefleet.webhook.secretKey" -}}
{{- if .Values.webhook.auth.existingSecret -}}{{ .Values.webhook.auth.existingSecretKey }}{{- else -}}token{{- end -}}
{{- end -}}

{{/* A password: read from the existing Secret when one is named, else generated once. */}}
{{- define "storefleet.password" -}}
{{- if .existingSecret -}}
{{- include "storefleet.existingSecretValue" (dict "root" .root "name" .existingSecret "key" .key) -}}
{{- else -}}
{{- include "storefleet.generatedSecret" (dict "root" .root "name" .generatedSecret "key" "password") -}}
{{- end -}}
{{- end -}}

{{- define "storefleet.postgresql.dsn" -}}
{{- $pg := .Values.postgresql -}}
{{- if $pg.enabled -}}
{{- $password := include "storefleet.password" (dict "root" . "existingSecret" $pg.auth.existingSecret "key" $pg.auth.existingSecretPasswordKey "generatedSecret" (include "storefleet.componentName" (dict "root" . "component" "postgresql"))) -}}
{{- printf "postgresql://%s:%s@%s.%s.svc:%d/%s" (include "storefleet.urlCredential" $pg.auth.username) (include "storefleet.urlCredential" $password) (include "storefleet.componentName" (dict "root" . "component" "postgresql")) .Release.Namespace (int $pg.port) $pg.auth.database -}}
{{- else -}}
{{- $ext := $pg.external -}}
{{- $password := "" -}}
{{- if $ext.existingSecret -}}
{{- $password = include "storefleet.existingSecretValue" (dict "root" . "name" $ext.existingSecret "key" $ext.existingSecretPasswordKey) -}}
{{- end -}}
{{- $user := include "storefleet.urlCredential" $ext.username -}}
{{- if $password -}}{{- $user = printf "%s:%s" $user (include "storefleet.urlCredential" $password) -}}{{- end -}}
{{- printf "postgresql://%s@%s:%d/%s?sslmode=%s" $user (required "postgresql.external.host is required when postgresql.enabled is false" $ext.host) (int $ext.port) $ext.database $ext.sslmode -}}
{{- end -}}
{{- end -}}

{{- define "storefleet.redis.url" -}}
{{- $redis := .Values.redis -}}
{{- if $redis.enabled -}}
{{- $password := include "storefleet.password" (dict "root" . "existingSecret" $redis.auth.existingSecret "key" $redis.auth.existingSecretPasswordKey "generatedSecret" (include "storefleet.componentName" (dict "root" . "component" "redis"))) -}}
{{- printf "redis://:%s@%s.%s.svc:%d/0" (include "storefleet.urlCredential" $password) (include "storefleet.componentName" (dict "root" . "component" "redis")) .Release.Namespace (int $redis.port) -}}
{{- else -}}
{{- $ext := $redis.external -}}
{{- $auth := "" -}}
{{- if $ext.existingSecret -}}
{{- $password := include "storefleet.existingSecretValue" (dict "root" . "name" $ext.existingSecret "key" $ext.existingSecretPasswordKey) -}}
{{- if $password -}}{{- $auth = printf ":%s@" (include "storefleet.urlCredential" $password) -}}{{- end -}}
{{- end -}}
{{- printf "%s://%s%s:%d/%d" (ternary "rediss" "redis" $ext.tls) $auth (required "redis.external.host is required when redis.enabled is false" $ext.host) (int $ext.port) (int $ext.database) -}}
{{- end -}}
{{- end -}}

{{- define "storefleet.kafka.bootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s.%s.svc:%d" (include "storefleet.componentName" (dict "root" . "component" "kafka")) .Release.Namespace (int .Values.kafka.port) -}}
{{- else -}}
{{- required "kafka.external.bootstrap is required when kafka.enabled is false" .Values.kafka.external.bootstrap -}}
{{- end -}}
{{- end -}}

{{- define "storefleet.ingest.url" -}}
{{- if .Values.webhook.enabled -}}
{{- printf "http://%s.%s.svc:%d" (include "storefleet.componentName" (dict "root" . "component" "webhook")) .Release.Namespace (int .Values.webhook.service.port) -}}
{{- else -}}
{{- required "webhook.externalUrl is required when webhook.enabled is false" .Values.webhook.externalUrl -}}
{{- end -}}
{{- end -}}

{{- define "storefleet.ingest.token" -}}
{{- if .Values.webhook.auth.existingSecret -}}
{{- include "storefleet.existingSecretValue" (dict "root" . "name" .Values.webhook.auth.existingSecret "key" .Values.webhook.auth.existingSecretKey) -}}
{{- else -}}
{{- include "storefleet.generatedSecret" (dict "root" . "name" (include "storefleet.componentName" (dict "root" . "component" "webhook")) "key" "token") -}}
{{- end -}}
{{- end -}}

{{/* env entries read from the endpoints Secret; call with (dict "root" $ "keys" (list NAME...)). */}}
{{- define "storefleet.endpointsEnv" -}}
{{- $secret := include "storefleet.endpointsSecret" .root -}}
{{- range .keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- end -}}

{{/* Namespaces fleets run in: the release namespace, operator.watchNamespaces and
spark.serviceAccount.namespaces. Each gets the endpoints Secret and the shared volumes; the Spark
operator runs SparkApplications there. A list, as JSON: fromJsonArray it. */}}
{{- define "storefleet.fleetNamespaces" -}}
{{- concat (list .Release.Namespace) .Values.operator.watchNamespaces .Values.spark.serviceAccount.namespaces | uniq | toJson -}}
{{- end -}}

{{/* PersistentVolumeClaim of a shared volume (logs or checkpoints); empty: an emptyDir.
Call with (dict "root" $ "volume" "logs"). */}}
{{- define "storefleet.sharedClaim" -}}
{{- $v := index .root.Values.sharedVolumes .volume -}}
{{- if $v.existingClaim -}}
{{- $v.existingClaim -}}
{{- else if $v.enabled -}}
{{- include "storefleet.componentName" (dict "root" .root "component" .volume) -}}
{{- end -}}
{{- end -}}

{{/* Secret and key holding the ingest token key (per-fleet tokens are derived from it). */}}
{{- define "storefleet.tokenKey.secretName" -}}
{{- default (include "storefleet.componentName" (dict "root" . "component" "ingest-token-key")) .Values.webhook.auth.tokenKey.existingSecret -}}
{{- end -}}

{{- define "storefleet.tokenKey.secretKey" -}}
{{- if .Values.webhook.auth.tokenKey.existingSecret -}}{{ .Values.webhook.auth.tokenKey.existingSecretKey }}{{- else -}}key{{- end -}}
{{- end -}}

{{- define "storefleet.sparkOperator.name" -}}
{{- include "storefleet.componentName" (dict "root" . "component" "spark-operator") -}}
{{- end -}}

{{- define "storefleet.sparkOperator.serviceAccountName" -}}
{{- if .Values.sparkOperator.serviceAccount.create -}}
{{- default (include "storefleet.sparkOperator.name" .) .Values.sparkOperator.serviceAccount.name -}}
{{- else -}}
{{- required "sparkOperator.serviceAccount.name is required when serviceAccount.create is false" .Values.sparkOperator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Namespaces whose SparkApplications the Spark operator runs, as JSON; [""] means all. */}}
{{- define "storefleet.sparkOperator.jobNamespaces" -}}
{{- if .Values.sparkOperator.jobNamespaces -}}
{{- .Values.sparkOperator.jobNamespaces | toJson -}}
{{- else -}}
{{- include "storefleet.fleetNamespaces" . -}}
{{- end -}}
{{- end -}}
