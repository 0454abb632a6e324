{{- define "llm-gateway.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-gateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "llm-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llm-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "llm-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llm-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llm-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Whether the pre-install/pre-upgrade Job migrates (then the pods do not). */}}
{{- define "llm-gateway.migrationJob" -}}
{{- $url := (.Values.config.database | default dict).url | default "" }}
{{- $external := or .Values.existingConfigMap (and (not (hasPrefix "sqlite" $url)) (ne $url "")) }}
{{- if and .Values.migrations.job (not .Values.postgresql.enabled) $external -}}
true
{{- end }}
{{- end }}

{{/* The gateway's config: the values' config, pointed at the in-chart Redis/PostgreSQL when they are on. */}}
{{- define "llm-gateway.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $db := $cfg.database | default dict }}
{{- if .Values.postgresql.enabled }}
{{- $_ := set $db "url" (printf "postgresql://llmgw:${POSTGRES_PASSWORD}@%s-postgresql:5432/llmgw" .Release.Name) }}
{{- end }}
{{- if eq ($db.url | default "") "" }}
{{- $_ := unset $db "url" }}
{{- end }}
{{- $_ := set $db "migrate_on_start" (not (eq (include "llm-gateway.migrationJob" .) "true")) }}
{{- $_ := set $cfg "database" $db }}
{{- $redis := $cfg.redis | default dict }}
{{- if .Values.redis.enabled }}
{{- $_ := set $redis "url" (printf "redis://%s-redis:6379/0" .Release.Name) }}
{{- end }}
{{- if eq ($redis.url | default "") "" }}
{{- $_ := unset $redis "url" }}
{{- end }}
{{- $_ := set $cfg "redis" $redis }}
{{- toYaml $cfg }}
{{- end }}

{{- define "llm-gateway.configMapName" -}}
{{- default (include "llm-gateway.fullname" .) .Values.existingConfigMap }}
{{- end }}

{{/* Environment shared by the pods and the migration Job: (dict "ctx" . "suffix" "" or "-migrate"). */}}
{{- define "llm-gateway.envFrom" -}}
{{- $ := .ctx }}
{{- if $.Values.existingSecret }}
- secretRef:
    name: {{ $.Values.existingSecret }}
{{- end }}
{{- if $.Values.secretEnv }}
- secretRef:
    name: {{ include "llm-gateway.fullname" $ }}{{ .suffix }}
{{- end }}
{{- end }}

{{- define "llm-gateway.env" -}}
- name: LLM_GATEWAY_CONFIG
  value: /etc/llm-gateway/gateway.yaml
{{- if .Values.postgresql.enabled }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Release.Name }}-postgresql
      key: password
{{- end }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end }}
