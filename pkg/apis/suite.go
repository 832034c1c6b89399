package apis

import (
	"encoding/json"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Suite is a gator-style test suite (test.gatekeeper.sh/v1alpha1).
type Suite struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Tests             []SuiteTest `json:"tests,omitempty"`
	Skip              bool        `json:"skip,omitempty"`
}

// SuiteTest pairs a template and a constraint (paths relative to the suite).
type SuiteTest struct {
	Name       string `json:"name,omitempty"`
	Template   string `json:"template,omitempty"`
	Constraint string `json:"constraint,omitempty"`
	Expansion  string `json:"expansion,omitempty"`
	Policy     string `json:"policy,omitempty"`
	Binding    string `json:"binding,omitempty"`
	// Mutators (a Bouncer extension gator does not read) are files of
	// Assign, AssignMetadata, ModifySet or AssignImage documents applied to
	// each case's object before it is reviewed, as admission applies them
	// before validating. A test with mutators may leave out the template
	// and constraint: its cases then assert only the mutated object.
	Mutators []string    `json:"mutators,omitempty"`
	Cases    []SuiteCase `json:"cases,omitempty"`
	Invalid  bool        `json:"invalid,omitempty"`
	Skip     bool        `json:"skip,omitempty"`
}

// SuiteCase reviews one object and checks assertions on the result.
type SuiteCase struct {
	Name      string   `json:"name,omitempty"`
	Object    string   `json:"object,omitempty"`
	Inventory []string `json:"inventory,omitempty"`
	// Mutated (a Bouncer extension, with the test's mutators) is a file
	// holding the object the mutators must make of Object, compared whole.
	Mutated    string      `json:"mutated,omitempty"`
	Assertions []Assertion `json:"assertions,omitempty"`
	Skip       bool        `json:"skip,omitempty"`
}

// Assertion counts violations whose message matches Message (a regex).
// Violations is a count, "yes" (at least one) or "no"; absent means "yes".
type Assertion struct {
	Violations *intstr.IntOrString `json:"violations,omitempty"`
	Message    *string             `json:"message,omitempty"`
}

// UnmarshalJSON accepts violations: yes/no also when a YAML 1.1 decoder has
// already turned the bare words into booleans.
func (a *Assertion) UnmarshalJSON(b []byte) error {
	var raw struct {
		Violations json.RawMessage `json:"violations,omitempty"`
		Message    *string         `json:"message,omitempty"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	a.Message = raw.Message
	a.Violations = nil
	switch v := strings.TrimSpace(string(raw.Violations)); v {
	case "", "null":
	case "true":
		x := intstr.FromString("yes")
		a.Violations = &x
	case "false":
		x := intstr.FromString("no")
		a.Violations = &x
	default:
		var x intstr.IntOrString
		if err := json.Unmarshal(raw.Violations, &x); err != nil {
			return fmt.Errorf("violations: %w", err)
		}
		a.Violations = &x
	}
	return nil
}
