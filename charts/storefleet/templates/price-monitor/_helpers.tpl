{{/* Secret and key holding the password of the price monitor's database role. */}}
{{- define "storefleet.priceMonitor.secretName" -}}
{{- default (include "storefleet.componentName" (dict "root" . "component" "price-monitor")) .Values.priceMonitor.auth.existingSecret -}}
{{- end -}}

{{- define "storefleet.priceMonitor.secretKey" -}}
{{- if .Values.priceMonitor.auth.existingSecret -}}{{ .Values.priceMonitor.auth.existingSecretPasswordKey }}{{- else -}}password{{- end -}}
{{- end -}}

{{/* The PostgreSQL role of the price monitor (made by migration 0060). */}}
{{- define "storefleet.priceMonitor.role" -}}storefleet_price_monitor{{- end -}}
