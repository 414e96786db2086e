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
