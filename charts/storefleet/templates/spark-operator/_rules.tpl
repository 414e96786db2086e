{{/* The Spark operator controller's rules in a namespace of Spark jobs (v2.5: the rules of its
own chart, less Ingresses, which only the UI ingress needs, turned off here). */}}
{{- define "storefleet.sparkOperator.jobRules" -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, update, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, update, patch]
- apiGroups: [sparkoperator.k8s.io]
  resources: [sparkapplications]
  verbs: [get, list, watch, create, delete]
- apiGroups: [sparkoperator.k8s.io]
  resources: [scheduledsparkapplications, sparkconnects]
  verbs: [get, list, watch]
- apiGroups: [sparkoperator.k8s.io]
  resources: [sparkapplications/status, scheduledsparkapplications/status, sparkconnects/status]
  verbs: [update]
- apiGroups: [sparkoperator.k8s.io]
  # Driver pods carry a blocking owner reference to their application.
  resources: [sparkapplications/finalizers, scheduledsparkapplications/finalizers, sparkconnects/finalizers]
  verbs: [update]
{{- end -}}
