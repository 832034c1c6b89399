package apis

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Enforcement actions of a constraint.
const (
	ActionDeny   = "deny"
	ActionDryRun = "dryrun"
	ActionWarn   = "warn"
	ActionScoped = "scoped"
)

// Enforcement points, named as Gatekeeper names them so that
// scopedEnforcementActions written for Gatekeeper select the same places.
const (
	PointWebhook = "validation.gatekeeper.sh"
	PointAudit   = "audit.gatekeeper.sh"
	PointCLI     = "gator.gatekeeper.sh"
	PointVAP     = "vap.k8s.io"
	PointAll     = "*"
)

// Constraint is an instance of a template: which objects it applies to and
// the parameters it runs with. Its kind is the template's constraint kind.
type Constraint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ConstraintSpec   `json:"spec,omitempty"`
	Status            ConstraintStatus `json:"status,omitempty"`
}

// ConstraintSpec is the common shape of every constraint kind.
type ConstraintSpec struct {
	Match                    Match                     `json:"match,omitempty"`
	Parameters               map[string]any            `json:"parameters,omitempty"`
	EnforcementAction        string                    `json:"enforcementAction,omitempty"`
	ScopedEnforcementActions []ScopedEnforcementAction `json:"scopedEnforcementActions,omitempty"`
}

// ScopedEnforcementAction applies an action at some enforcement points only.
type ScopedEnforcementAction struct {
	Action            string             `json:"action"`
	EnforcementPoints []EnforcementPoint `json:"enforcementPoints"`
}

// EnforcementPoint names where an action applies ("*" is everywhere).
type EnforcementPoint struct {
	Name string `json:"name"`
}

// ConstraintStatus mirrors Gatekeeper's constraint status.
type ConstraintStatus struct {
	ByPod           []ByPodStatus     `json:"byPod,omitempty"`
	TotalViolations *int64            `json:"totalViolations,omitempty"`
	Violations      []StatusViolation `json:"violations,omitempty"`
	AuditTimestamp  string            `json:"auditTimestamp,omitempty"`
}

// StatusViolation is one audited violation on a constraint's status.
type StatusViolation struct {
	Group             string `json:"group,omitempty"`
	Version           string `json:"version,omitempty"`
	Kind              string `json:"kind,omitempty"`
	Namespace         string `json:"namespace,omitempty"`
	Name              string `json:"name,omitempty"`
	Message           string `json:"message,omitempty"`
	EnforcementAction string `json:"enforcementAction,omitempty"`
}

// Match selects the objects a constraint applies to, with Gatekeeper's
// semantics: every field given must match; an absent field matches all.
type Match struct {
	Kinds              []Kinds               `json:"kinds,omitempty"`
	Scope              string                `json:"scope,omitempty"`
	Namespaces         []string              `json:"namespaces,omitempty"`
	ExcludedNamespaces []string              `json:"excludedNamespaces,omitempty"`
	LabelSelector      *metav1.LabelSelector `json:"labelSelector,omitempty"`
	NamespaceSelector  *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	Name               string                `json:"name,omitempty"`
	Source             string                `json:"source,omitempty"`
}

// Kinds is one set of API groups × kinds; "*" or an empty list is any.
type Kinds struct {
	APIGroups []string `json:"apiGroups,omitempty"`
	Kinds     []string `json:"kinds,omitempty"`
}

// Sources of an object under review.
const (
	SourceAll       = "All"
	SourceOriginal  = "Original"
	SourceGenerated = "Generated"
)
