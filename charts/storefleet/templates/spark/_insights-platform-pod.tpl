{{- /* The pod template of the driver and of the executors; the same as the operator gives a
fleet's insights job (operator/storefleet_operator/children.py), with scope `platform`. */ -}}
{{- define "storefleet.insightsPlatform.pod" -}}
metadata:
  labels:
    {{- include "storefleet.componentSelectorLabels" (dict "root" .root "component" "insights-platform") | nindent 4 }}
spec:
  enableServiceLinks: false
  securityContext:
    runAsNonRoot: true
    fsGroup: 10001
  containers:
    - name: {{ .container }}
      env:
        # Only the platform-wide `ALL`: each fleet's own job computes its stores and ALL:<fleet>.
        - name: STOREFLEET_INSIGHTS_SCOPE
          value: platform
        - name: STOREFLEET_SPARK_MASTER
          value: k8s://https://kubernetes.default.svc
        - name: STOREFLEET_EVENTS_TOPIC
          value: {{ .root.Values.kafka.topics.events | quote }}
        - name: STOREFLEET_LOGS_DIR
          value: /var/lib/storefleet/logs
        - name: STOREFLEET_INSIGHTS_CHECKPOINT_DIR
          value: {{ printf "/var/lib/storefleet/checkpoints/%s" .name | quote }}
        - name: STOREFLEET_INSIGHTS_TRIGGER_SECONDS
          value: {{ .p.triggerSeconds | quote }}
        - name: STOREFLEET_INSIGHTS_WATERMARK_SECONDS
          value: {{ .p.watermarkSeconds | quote }}
        - name: STOREFLEET_INSIGHTS_SHUFFLE_PARTITIONS
          value: {{ .p.shufflePartitions | quote }}
        - name: STOREFLEET_INSIGHTS_MAX_OFFSETS_PER_TRIGGER
          value: {{ .root.Values.spark.maxOffsetsPerTrigger.insights | quote }}
      envFrom:
        - secretRef:
            name: {{ include "storefleet.endpointsSecret" .root }}
      volumeMounts:
        - name: logs
          mountPath: /var/lib/storefleet/logs
        - name: checkpoints
          mountPath: /var/lib/storefleet/checkpoints
        - name: tmp
          mountPath: /tmp
      securityContext:
        allowPrivilegeEscalation: false
        capabilities:
          drop: [ALL]
  volumes:
    - name: logs
      {{- if .logs }}
      persistentVolumeClaim:
        claimName: {{ .logs }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    - name: checkpoints
      {{- if .checkpoints }}
      persistentVolumeClaim:
        claimName: {{ .checkpoints }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    - name: tmp
      emptyDir: {}
{{- end -}}
