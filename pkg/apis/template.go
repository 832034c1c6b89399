package apis

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// TemplatesGroup is the API group of ConstraintTemplate.
	TemplatesGroup = "templates.gatekeeper.sh"
	// ConstraintsGroup is the API group of every generated constraint kind.
	ConstraintsGroup = "constraints.gatekeeper.sh"
	// ExpansionGroup is the API group of ExpansionTemplate.
	ExpansionGroup = "expansion.gatekeeper.sh"
	// ConfigGroup is the API group of Config.
	ConfigGroup = "config.gatekeeper.sh"
	// SyncSetGroup is the API group of SyncSet.
	SyncSetGroup = "syncset.gatekeeper.sh"
	// SuiteGroup is the API group of gator-style test Suites.
	SuiteGroup = "test.gatekeeper.sh"

	// AdmissionTarget is the only target Bouncer evaluates, as in Gatekeeper.
	AdmissionTarget = "admission.k8s.gatekeeper.sh"

	// EngineRego and EngineCEL name the entries of a target's code[].
	EngineRego = "Rego"
	EngineCEL  = "K8sNativeValidation"

	KindConstraintTemplate = "ConstraintTemplate"
	KindExpansionTemplate  = "ExpansionTemplate"
	KindConfig             = "Config"
	KindSyncSet            = "SyncSet"
	KindSuite              = "Suite"
)

// ConstraintTemplate is the class of a policy: its parameters schema and the
// code (Rego or CEL) that finds violations.
type ConstraintTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ConstraintTemplateSpec   `json:"spec,omitempty"`
	Status            ConstraintTemplateStatus `json:"status,omitempty"`
}

// ConstraintTemplateSpec describes the generated constraint CRD and the code.
type ConstraintTemplateSpec struct {
	CRD     CRD      `json:"crd,omitempty"`
	Targets []Target `json:"targets,omitempty"`
}

// CRD describes the constraint kind the template creates.
type CRD struct {
	Spec CRDSpec `json:"spec,omitempty"`
}

// CRDSpec holds the constraint kind's names and its parameters schema.
type CRDSpec struct {
	Names      Names       `json:"names,omitempty"`
	Validation *Validation `json:"validation,omitempty"`
}

// Names of the generated constraint kind.
type Names struct {
	Kind       string   `json:"kind,omitempty"`
	ShortNames []string `json:"shortNames,omitempty"`
}

// Validation holds the schema of spec.parameters of the constraint kind.
type Validation struct {
	// OpenAPIV3Schema is the schema of spec.parameters.
	OpenAPIV3Schema *apiextensionsv1.JSONSchemaProps `json:"openAPIV3Schema,omitempty"`
	// LegacySchema marks a v1beta1 schema that was not structural; it is
	// accepted and treated as preserving unknown fields where no type is given.
	LegacySchema *bool `json:"legacySchema,omitempty"`
}

// Target is code for one enforcement target.
type Target struct {
	Target string   `json:"target,omitempty"`
	Rego   string   `json:"rego,omitempty"`
	Libs   []string `json:"libs,omitempty"`
	Code   []Code   `json:"code,omitempty"`
	// Operations limits admission operations, as in Gatekeeper.
	Operations []string `json:"operations,omitempty"`
}

// Code is one engine's implementation of the template.
type Code struct {
	Engine string `json:"engine"`
	// Source is engine specific; kept raw and decoded by the driver.
	Source *RawExtension `json:"source,omitempty"`
}

// ConstraintTemplateStatus mirrors Gatekeeper's template status.
type ConstraintTemplateStatus struct {
	Created bool          `json:"created,omitempty"`
	ByPod   []ByPodStatus `json:"byPod,omitempty"`
}

// ByPodStatus is one replica's view of a template or constraint.
type ByPodStatus struct {
	ID                 string        `json:"id,omitempty"`
	ObservedGeneration int64         `json:"observedGeneration,omitempty"`
	Operations         []string      `json:"operations,omitempty"`
	Enforced           bool          `json:"enforced,omitempty"`
	Errors             []StatusError `json:"errors,omitempty"`
}

// StatusError is an error as reported on status.
type StatusError struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Location string `json:"location,omitempty"`
}

// RegoSource is the source of a code[] entry with engine Rego.
type RegoSource struct {
	Rego    string   `json:"rego"`
	Libs    []string `json:"libs,omitempty"`
	Version string   `json:"version,omitempty"`
}
