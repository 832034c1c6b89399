{{- define "bouncer.labels" -}}
app.kubernetes.io/name: bouncer
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: bouncer
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
{{- define "bouncer.selector" -}}
app.kubernetes.io/name: bouncer
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
