package apis

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// MutationsGroup is the API group of Gatekeeper's mutators.
const MutationsGroup = "mutations.gatekeeper.sh"

// Kinds of mutators.
const (
	KindAssign         = "Assign"
	KindAssignMetadata = "AssignMetadata"
	KindModifySet      = "ModifySet"
	KindAssignImage    = "AssignImage"
)

// Mutator is the union of Gatekeeper's four mutator kinds: their specs
// share most fields, and the kind says which of the rest apply.
type Mutator struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              MutatorSpec `json:"spec,omitempty"`
}

// MutatorSpec follows mutations.gatekeeper.sh v1 (and v1beta1, v1alpha1).
type MutatorSpec struct {
	// ApplyTo lists the group/version/kind triples the mutator may change;
	// no globs. Required for all kinds except AssignMetadata.
	ApplyTo []MutationApplyTo `json:"applyTo,omitempty"`
	// Match selects objects with the constraints' match fields.
	Match Match `json:"match,omitempty"`
	// Location is the path of the field to change, e.g.
	// spec.containers[name: *].imagePullPolicy.
	Location   string            `json:"location,omitempty"`
	Parameters MutatorParameters `json:"parameters,omitempty"`
}

// MutationApplyTo is one set of groups × versions × kinds, optionally
// restricted to admission operations.
type MutationApplyTo struct {
	Groups   []string `json:"groups,omitempty"`
	Kinds    []string `json:"kinds,omitempty"`
	Versions []string `json:"versions,omitempty"`
	// Operations are CREATE, UPDATE or "*"; empty means all.
	Operations []string `json:"operations,omitempty"`
}

// MutatorParameters holds every kind's parameters.
type MutatorParameters struct {
	PathTests []PathTest `json:"pathTests,omitempty"`
	// Assign and AssignMetadata.
	Assign *AssignField `json:"assign,omitempty"`
	// ModifySet.
	Operation string        `json:"operation,omitempty"`
	Values    *ModifyValues `json:"values,omitempty"`
	// AssignImage.
	AssignDomain string `json:"assignDomain,omitempty"`
	AssignPath   string `json:"assignPath,omitempty"`
	AssignTag    string `json:"assignTag,omitempty"`
}

// PathTest conditions a mutation on a prefix of its location.
type PathTest struct {
	SubPath   string `json:"subPath,omitempty"`
	Condition string `json:"condition,omitempty"`
}

// AssignField is where an assigned value comes from: exactly one of the
// fields is set. Value is a pointer to a holder so that an explicit null
// is told apart from an absent value.
type AssignField struct {
	Value        *AnyValue     `json:"value,omitempty"`
	FromMetadata *FromMetadata `json:"fromMetadata,omitempty"`
	ExternalData any           `json:"externalData,omitempty"`
}

// AnyValue holds any JSON value, null included.
type AnyValue struct{ Value any }

// UnmarshalJSON keeps the raw value, as utiljson decodes it.
func (a *AnyValue) UnmarshalJSON(b []byte) error {
	return unmarshalAny(b, &a.Value)
}

// MarshalJSON writes the held value.
func (a AnyValue) MarshalJSON() ([]byte, error) { return marshalAny(a.Value) }

// FromMetadata names the object's metadata field to assign.
type FromMetadata struct {
	// Field is "namespace" or "name".
	Field string `json:"field,omitempty"`
}

// ModifyValues are the set members a ModifySet merges or prunes.
type ModifyValues struct {
	FromList []any `json:"fromList,omitempty"`
}

// unmarshalAny keeps integers as int64, as the apiserver and pkg/load do,
// so assigned values compare equal to the values already in objects.
func unmarshalAny(b []byte, v *any) error { return utiljson.Unmarshal(b, v) }

func marshalAny(v any) ([]byte, error) { return json.Marshal(v) }
