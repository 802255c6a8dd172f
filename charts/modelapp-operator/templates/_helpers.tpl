{{/* Names and labels: the one place they are spelled. */}}

{{- define "modelapp-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelapp-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modelapp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelapp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modelapp-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "modelapp-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelapp
{{- end -}}

{{- define "modelapp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelapp-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image: by digest when one is given. */}}
{{- define "modelapp-operator.image" -}}
{{- $tag := .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "modelapp-operator.peeringName" -}}
{{- default (include "modelapp-operator.fullname" .) .Values.ha.peeringName -}}
{{- end -}}

{{- define "modelapp-operator.replicas" -}}
{{- if .Values.ha.enabled -}}{{ .Values.ha.replicas }}{{- else -}}{{ .Values.replicaCount }}{{- end -}}
{{- end -}}

{{/*
The namespaced RBAC rules: what the operator does inside a namespace it follows. Rendered into one
ClusterRole (every namespace) or into a Role per watched namespace. Every rule says why.
*/}}
{{- define "modelapp-operator.namespacedRules" -}}
# kopf lists and watches ModelApps, and patches them to add/remove its finalizer and its progress
# annotations; the controller reads one by name at the start of each reconcile.
- apiGroups: [modelapp.dev]
  resources: [modelapps]
  verbs: [get, list, watch, patch]
# The controller writes conditions, versions and history through a merge patch of the status subresource.
- apiGroups: [modelapp.dev]
  resources: [modelapps/status]
  verbs: [patch]
# kopf watches the Deployments the operator manages (rollout progress wakes their ModelApp); the controller
# reads one by name and server-side applies it. An apply PATCH that creates the object is authorized as
# `create` too (checked on the test bed: without it, 403 "cannot create resource deployments").
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
# The controller reads the app's Service by name and server-side applies it (create on first apply).
- apiGroups: [""]
  resources: [services]
  verbs: [get, create, patch]
# The Secret a ModelApp names in auth.secretRef, read by name only: never list or watch.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Events on ModelApps (new version, rollout started/complete, rolled back), posted through kopf.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.rbac.imagePackaging }}
# Image packaging: Kaniko build Jobs and contract-test Jobs, named from a hash of what they build;
# created if absent, watched to completion, deleted when superseded.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# Image packaging: a build pod's termination message carries the pushed image digest.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
{{- end }}
{{- end -}}
