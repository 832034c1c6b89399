// Package vet validates a whole policy commit offline, with the same engine
// the cluster runs: what `bouncer vet DIR` prints and what git sync checks
// before it applies anything. A commit is applied whole or not at all, so
// vet reports every problem it finds, not only the first.
package vet

import (
	"context"
	"fmt"

	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Render modes of a directory.
const (
	RenderAuto      = "auto"      // kustomize when the directory holds a kustomization, plain YAML otherwise
	RenderNone      = "none"      // plain YAML, JSON files only
	RenderKustomize = "kustomize" // the directory must hold a kustomization
)

// Codes of findings, stable for status and CI output.
const (
	CodeRender          = "render"           // the directory could not be read or rendered
	CodeKindNotAllowed  = "kind-not-allowed" // a kind outside AllowedKinds
	CodeTemplate        = "template"         // a template does not compile
	CodeConstraint      = "constraint"       // a constraint is invalid or has no template
	CodeSuite           = "suite"            // a Suite failed
	CodeDuplicateObject = "duplicate"        // two documents name one object
)

// Options of a vet run.
type Options struct {
	// Render is one of the Render* modes; empty means RenderAuto.
	Render string
	// AllowedKinds, when not empty, lists the only group/kinds a commit may
	// hold. Constraint kinds are matched by group alone (constraints.gatekeeper.sh).
	AllowedKinds []schema.GroupKind
	// RequireSuitesPass runs every Suite found under the directory.
	RequireSuitesPass bool
	// KnownTemplate reports whether a constraint kind's template exists
	// outside the commit (already in the cluster); nil means none does.
	KnownTemplate func(kind string) bool
	// Engine restricts evaluation to one language (see policyset.NewEngine).
	Engine string
	// Load bounds reading (document size, remote kustomize resources).
	Load load.Options
}

// Finding is one problem, with where it is.
type Finding struct {
	Code    string `json:"code"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Object  string `json:"object,omitempty"` // group/Kind namespace/name
	Message string `json:"message"`
}

func (f Finding) String() string {
	loc := f.File
	if f.Line > 0 {
		loc = fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	if f.Object != "" {
		loc += " " + f.Object
	}
	return fmt.Sprintf("%s: [%s] %s", loc, f.Code, f.Message)
}

// Result is what a vet run found.
type Result struct {
	// Objects are the rendered documents in order, ready to apply.
	Objects []*unstructured.Unstructured
	// Documents are the same, with the file and line they came from.
	Documents []*load.Document
	Findings  []Finding
}

// OK reports whether the commit may be applied.
func (r *Result) OK() bool { return len(r.Findings) == 0 }

// Dir renders and validates the directory dir. The error is for a
// cancelled context only; everything wrong with the commit is a Finding.
//
// This first version renders with pkg/load and compiles templates and
// constraints into a fresh engine; the fuller checks are being built.
func Dir(ctx context.Context, dir string, o Options) (*Result, error) {
	res := &Result{}
	var set policyset.Set
	err := load.WalkContext(ctx, []string{dir}, o.Load, func(d *load.Document) error {
		res.Documents = append(res.Documents, d)
		res.Objects = append(res.Objects, &unstructured.Unstructured{Object: d.Object})
		set.Add(d)
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.Findings = append(res.Findings, Finding{Code: CodeRender, File: dir, Message: err.Error()})
		return res, nil
	}
	e, err := policyset.NewEngine(0, o.Engine)
	if err != nil {
		return nil, err
	}
	if err := set.LoadInto(e); err != nil {
		res.Findings = append(res.Findings, Finding{Code: CodeTemplate, File: dir, Message: err.Error()})
	}
	return res, nil
}
