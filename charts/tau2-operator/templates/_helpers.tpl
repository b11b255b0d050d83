{{/* Chart name, or nameOverride. */}}
{{- define "tau2-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: the release name when it already holds
the chart name (release "tau2-operator" gives "tau2-operator", not
"tau2-operator-tau2-operator"). 52 characters at most, so that suffixes such
as "-progress" and "-dashboard-evaluation" keep names within 63.
*/}}
{{- define "tau2-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tau2-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "tau2-operator.labels" -}}
helm.sh/chart: {{ include "tau2-operator.chart" . }}
{{ include "tau2-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tau2-operator
{{- end }}

{{/* The release's objects. */}}
{{- define "tau2-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tau2-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's pods (Deployment selector, Services, PDB, NetworkPolicy): not
the `helm test` pod, which shares the release's labels.
*/}}
{{- define "tau2-operator.podSelectorLabels" -}}
{{ include "tau2-operator.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "tau2-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tau2-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tau2-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where workers report progress: the Service that selects the leader. */}}
{{- define "tau2-operator.progressEndpoint" -}}
{{- printf "http://%s-progress.%s.svc:%d" (include "tau2-operator.fullname" .) .Release.Namespace (int .Values.grpcPort) }}
{{- end }}

{{/* The metrics Service's URL of a path, e.g. /readyz. */}}
{{- define "tau2-operator.httpURL" -}}
{{- printf "http://%s-metrics.%s.svc:%d" (include "tau2-operator.fullname" .root) .root.Release.Namespace (int .root.Values.httpPort) }}{{ .path }}
{{- end }}

{{/* The restricted Pod Security Standard, for the operator and the test pod. */}}
{{- define "tau2-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "tau2-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}
