package apis

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExpansionTemplate tells how to derive the object a workload generates
// (for example the Pod of a Deployment) so Pod constraints reach workloads.
type ExpansionTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ExpansionTemplateSpec `json:"spec,omitempty"`
}

// ExpansionTemplateSpec follows expansion.gatekeeper.sh.
type ExpansionTemplateSpec struct {
	ApplyTo []ApplyTo `json:"applyTo,omitempty"`
	// TemplateSource is the dotted path of the pod template, e.g. spec.template.
	TemplateSource string `json:"templateSource,omitempty"`
	GeneratedGVK   GVK    `json:"generatedGVK,omitempty"`
	// EnforcementAction, when set, replaces the action of every violation
	// found on the generated object.
	EnforcementAction string `json:"enforcementAction,omitempty"`
}

// ApplyTo selects source objects by group, version and kind.
type ApplyTo struct {
	Groups   []string `json:"groups,omitempty"`
	Kinds    []string `json:"kinds,omitempty"`
	Versions []string `json:"versions,omitempty"`
}

// GVK is a group, version and kind.
type GVK struct {
	Group   string `json:"group,omitempty"`
	Version string `json:"version,omitempty"`
	Kind    string `json:"kind,omitempty"`
}
