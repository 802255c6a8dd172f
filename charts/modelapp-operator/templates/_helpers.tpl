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
# The controller writes conditions, versions and history: the whole status subresource, conditionally on
# the resourceVersion it read (an update).
- apiGroups: [modelapp.dev]
  resources: [modelapps/status]
  verbs: [update]
# Owned objects carry blockOwnerDeletion: true; where the OwnerReferencesPermissionEnforcement admission
# plugin runs (e.g. OpenShift), setting it needs update on the owner's finalizers. Grants nothing else.
- apiGroups: [modelapp.dev]
  resources: [modelapps/finalizers]
  verbs: [update]
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
# rollout.shadow: the ConfigMap that tells the serving pods where to mirror (server-side applied by name).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, patch]
# The Secret a ModelApp names in auth.secretRef, read by name only: never list or watch.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Per-object workload identity: the ServiceAccount a ModelApp names in auth.workloadIdentity.serviceAccountName
# (its client-id annotation), read by name ...
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get]
# ... and a short-lived token of it (audience api://AzureADTokenExchange) to exchange for the identity's
# storage token: the store is read as the ModelApp's namespace's identity, never as the operator's.
- apiGroups: [""]
  resources: [serviceaccounts/token]
  verbs: [create]
# An app's pods, listed by label (never watched): the newest pod of a finished Job carries Kaniko's digest or
# the failure in its termination message; a failing fetch init container says why; and the canary and shadow
# gates read the scorer pods' own metrics endpoints at their pod IPs.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Events on ModelApps (new version, rollout started/complete, rolled back), posted through kopf.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.rbac.imagePackaging }}
# Image packaging: kopf watches the operator's build and contract-test Jobs (their completion wakes the
# ModelApp); the controller lists an app's Jobs by label and creates them (deterministic names, 409 means
# already there). Finished Jobs go by TTL and owner references: no delete.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create]
# Image packaging: a Job that has no pod yet may have them refused by the API server (Pod Security
# admission, a quota); the Job controller says so only in FailedCreate Events on the Job, which the
# controller lists by the Job's uid and that reason (never watched).
- apiGroups: [""]
  resources: [events]
  verbs: [list]
{{- end }}
{{- end -}}

{{/* The namespaces the operator follows, as JSON: [] in cluster-wide mode, else watchNamespaces or, by
default, the release's own namespace (least privilege: namespaced Roles unless clusterWide is asked for). */}}
{{- define "modelapp-operator.namespaces" -}}
{{- if .Values.clusterWide -}}
{{- if .Values.watchNamespaces -}}
{{- fail "clusterWide: true follows every namespace; leave watchNamespaces empty (or set clusterWide: false)" -}}
{{- end -}}
[]
{{- else if .Values.watchNamespaces -}}
{{- toJson .Values.watchNamespaces -}}
{{- else -}}
{{- list .Release.Namespace | toJson -}}
{{- end -}}
{{- end -}}
