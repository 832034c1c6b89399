package engine

import (
	"context"

	"github.com/bouncer-policy/bouncer/pkg/apis"
)

// Review is one object under review, shaped like an admission/v1
// AdmissionRequest. Object and OldObject are JSON-shaped values
// (map[string]any with int64/float64 numbers), as decoded by the loader or
// the webhook.
type Review struct {
	UID         string
	Kind        GVK
	Resource    GVR
	SubResource string
	Name        string
	Namespace   string
	// Operation is CREATE, UPDATE, DELETE or CONNECT.
	Operation string
	UserInfo  map[string]any
	Object    map[string]any
	OldObject map[string]any
	DryRun    bool
	Options   map[string]any
	// NamespaceObject is the object's Namespace, when known.
	NamespaceObject map[string]any
	// Source is Original for objects as submitted and Generated for objects
	// derived by expansion.
	Source string
}

// GVK is a group, version and kind.
type GVK struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// GVR is a group, version and resource.
type GVR struct {
	Group    string `json:"group"`
	Version  string `json:"version"`
	Resource string `json:"resource"`
}

// GroupVersion returns "group/version", or "version" for the core group.
func (g GVK) GroupVersion() string {
	if g.Group == "" {
		return g.Version
	}
	return g.Group + "/" + g.Version
}

// Violation is what a driver reports for one constraint.
type Violation struct {
	Message string
	Details any
}

// Result is one violation of one constraint, as every entry point sees it.
type Result struct {
	// Constraint identifies the violated constraint.
	ConstraintKind string `json:"constraintKind"`
	ConstraintName string `json:"constraintName"`
	// Template is the name of the constraint's template.
	Template string `json:"template,omitempty"`
	Message  string `json:"message"`
	Details  any    `json:"details,omitempty"`
	// EnforcementAction is the action at the review's enforcement point:
	// deny, warn or dryrun. With scoped actions it is the strongest one.
	EnforcementAction string `json:"enforcementAction"`
	// ScopedActions lists every action of a scoped constraint at this point.
	ScopedActions []string `json:"scopedEnforcementActions,omitempty"`
	// ExpansionTemplate names the expansion that produced the object the
	// violation was found on; empty for the object as submitted.
	ExpansionTemplate string `json:"expansionTemplate,omitempty"`
}

// EvalError is a constraint that could not be evaluated for a review.
type EvalError struct {
	ConstraintKind string
	ConstraintName string
	Err            error
}

func (e *EvalError) Error() string {
	return "evaluating constraint " + e.ConstraintKind + "/" + e.ConstraintName + ": " + e.Err.Error()
}

func (e *EvalError) Unwrap() error { return e.Err }

// Response is the outcome of one review.
type Response struct {
	Results []Result
	// Errors are constraints that failed to evaluate. Callers choose how to
	// treat them (the webhook follows its failure policy; the CLI fails).
	Errors []*EvalError
	// Evaluated counts the constraints evaluated, expansions included.
	Evaluated int
	// Matched lists the constraints that matched, with RecordMatched.
	Matched []ConstraintRef
}

// ConstraintRef names a constraint.
type ConstraintRef struct {
	Kind              string
	Name              string
	ExpansionTemplate string
}

// Denied reports whether any result denies.
func (r *Response) Denied() bool {
	for i := range r.Results {
		if r.Results[i].EnforcementAction == apis.ActionDeny {
			return true
		}
	}
	return false
}

// Driver compiles templates written in one policy language.
type Driver interface {
	// Engine is the code[].engine value the driver handles.
	Engine() string
	// Compile compiles the template's code for this driver. code is the
	// template's entry for this engine; legacy Rego is passed as a Code
	// whose source holds rego and libs.
	Compile(t *apis.ConstraintTemplate, code apis.Code) (Program, error)
	// PrepareReview converts a review once into the driver's value form,
	// so that every constraint evaluated for it shares the conversion.
	PrepareReview(r *Review) (PreparedReview, error)
}

// PreparedReview is a driver's form of a review.
type PreparedReview any

// Program is a compiled template.
type Program interface {
	// PrepareParams converts a constraint's (validated) parameters once,
	// when the constraint is added.
	PrepareParams(params map[string]any) (any, error)
	// Eval evaluates the template with one constraint's parameters.
	Eval(ctx context.Context, review PreparedReview, params any) ([]Violation, error)
	// UsesInventory reports whether the code reads the inventory.
	UsesInventory() bool
}

// InventoryDriver is implemented by drivers that give policies access to
// cluster state (data.inventory in Rego).
type InventoryDriver interface {
	// WriteInventory sets the value at path under the inventory root, in
	// Gatekeeper's layout: cluster/<gv>/<kind>/<name> and
	// namespace/<ns>/<gv>/<kind>/<name>. An empty path replaces the whole
	// inventory; a nil value deletes the path.
	WriteInventory(ctx context.Context, path []string, value any) error
}
