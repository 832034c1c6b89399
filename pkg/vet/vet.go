// Package vet validates a whole policy commit offline, with the same engine
// the cluster runs: what `bouncer vet DIR` prints and what git sync checks
// before it applies anything. A commit is applied whole or not at all, so
// vet reports every problem it finds, not only the first.
package vet

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
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
	CodeInvalidObject   = "invalid-object"   // a document that is no Kubernetes object, or a policy that does not decode
	CodeExpansion       = "expansion"        // an ExpansionTemplate is invalid
	CodeConfig          = "config"           // a Config is invalid
	CodePolicy          = "policy"           // a ValidatingAdmissionPolicy or binding is invalid
	CodeMutator         = "mutator"          // a mutator is invalid or conflicts with another
)

// DefaultAllowedKinds are the policy kinds a commit may hold when Options
// name none. An entry of group constraints.gatekeeper.sh allows every kind
// of that group: each template makes its own constraint kind.
var DefaultAllowedKinds = []schema.GroupKind{
	{Group: apis.TemplatesGroup, Kind: apis.KindConstraintTemplate},
	{Group: apis.ConstraintsGroup, Kind: "*"},
	{Group: apis.ConfigGroup, Kind: apis.KindConfig},
	{Group: "syncset.gatekeeper.sh", Kind: "SyncSet"},
	{Group: apis.ExpansionGroup, Kind: apis.KindExpansionTemplate},
	{Group: "mutations.gatekeeper.sh", Kind: "Assign"},
	{Group: "mutations.gatekeeper.sh", Kind: "AssignMetadata"},
	{Group: "mutations.gatekeeper.sh", Kind: "ModifySet"},
	{Group: "mutations.gatekeeper.sh", Kind: "AssignImage"},
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicy"},
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicyBinding"},
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicy"},
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicyBinding"},
}

// Options of a vet run.
type Options struct {
	// Render is one of the Render* modes; empty means RenderAuto.
	Render string
	// AllowedKinds lists the only group/kinds a commit may hold; empty
	// means DefaultAllowedKinds. Constraint kinds are matched by group
	// alone (constraints.gatekeeper.sh), and Kind "*" allows a whole group.
	AllowedKinds []schema.GroupKind
	// RequireSuitesPass runs every Suite found under the directory.
	RequireSuitesPass bool
	// KnownTemplate reports whether a constraint kind's template exists
	// outside the commit (already in the cluster); nil means none does.
	// Such a constraint's match and enforcement actions are checked, its
	// parameters are not: the template's schema is not at hand.
	KnownTemplate func(kind string) bool
	// Engine restricts evaluation to one language (see policyset.NewEngine).
	Engine string
	// SuiteTimeout bounds the review of one Suite case; 0 means
	// DefaultSuiteTimeout.
	SuiteTimeout time.Duration
	// Load bounds reading (document size, remote kustomize resources).
	Load load.Options
}

// Finding is one problem, with where it is.
type Finding struct {
	Code string `json:"code"`
	// File is relative to the directory vetted (slash-separated), so a
	// finding reads the same in every checkout of the commit; empty for
	// the directory itself.
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
	// Objects are the rendered documents to apply, in order: those of an
	// allowed kind, without Suites and the test objects Suites name (see
	// Dir). Documents are the same, with the file and line they came from.
	Objects   []*unstructured.Unstructured
	Documents []*load.Document
	Findings  []Finding
}

// OK reports whether the commit may be applied.
func (r *Result) OK() bool { return len(r.Findings) == 0 }

// DefaultSuiteTimeout bounds one Suite case's review, as bouncer verify's
// --timeout default does.
const DefaultSuiteTimeout = 5 * time.Second

// Dir renders and validates the directory dir. The error is for a
// cancelled context or an unknown render mode only; everything wrong with
// the commit is a Finding.
//
// Which documents are objects to apply: every rendered document except
// Suites (test.gatekeeper.sh) and the files Suites name as a case's object
// or inventory, which are test fixtures, not policies. A file a Suite
// names as its template, constraint, expansion, policy or binding stays an
// object (that is the policy under test). Every object left must be of an
// allowed kind, so a fixture no Suite names is reported, not applied; the
// kinds ValidatingAdmissionPolicies in the commit name as paramKind are
// allowed too, as a policy's parameters are part of the policy.
//
// Mutators and SyncSets are checked for their kind only, MutatingAdmission-
// Policies and bindings for their shape: no package of Bouncer evaluates
// them yet.
func Dir(ctx context.Context, dir string, o Options) (*Result, error) {
	mode := o.Render
	if mode == "" {
		mode = RenderAuto
	}
	v := &vetting{dir: dir, opts: o, res: &Result{}}
	r, err := v.render(ctx, mode)
	if err != nil {
		return nil, err
	}
	suites, docs := splitSuites(r.docs)
	more, err := v.suitesIn(ctx, r.kustomized)
	if err != nil {
		return nil, err
	}
	suites = append(suites, more...)
	fixtures, suites := v.fixtures(suites)
	v.params = paramKinds(docs)
	for _, d := range docs {
		if fixtures[filepath.Clean(d.File)] {
			continue
		}
		if err := load.CheckObject(d); err != nil {
			v.addDoc(d, CodeInvalidObject, err)
			continue
		}
		if !v.allowed(d) {
			v.addDoc(d, CodeKindNotAllowed, fmt.Errorf("kind %s is not allowed: %s", groupKind(d), v.allowedList()))
			continue
		}
		v.res.Documents = append(v.res.Documents, d)
		v.res.Objects = append(v.res.Objects, &unstructured.Unstructured{Object: d.Object})
	}
	v.res.Documents = v.dropDuplicates(v.res.Documents)
	if err := v.checkPolicies(v.res.Documents); err != nil {
		return nil, err
	}
	if o.RequireSuitesPass {
		if err := v.runSuites(ctx, suites); err != nil {
			return nil, err
		}
	}
	return v.res, nil
}

// vetting is one run of Dir.
type vetting struct {
	dir    string
	opts   Options
	res    *Result
	params map[schema.GroupKind]bool // paramKinds of the commit's policies
}

func (v *vetting) add(f Finding) { v.res.Findings = append(v.res.Findings, f) }

// addErr adds a reading error, located when it is a load.Error.
func (v *vetting) addErr(err error) {
	f := Finding{Code: CodeRender, Message: err.Error()}
	var le *load.Error
	if errors.As(err, &le) {
		file := le.File
		if k := load.KustomizationFile(file); k != "" {
			file = k
		}
		f.File, f.Line, f.Message = v.rel(file), le.Line, le.Err.Error()
	}
	// kustomize names files by absolute path: name them as findings do.
	if abs, err := filepath.Abs(v.dir); err == nil {
		f.Message = strings.ReplaceAll(f.Message, abs+string(filepath.Separator), "")
	}
	v.add(f)
}

// addDoc adds a finding about one document; err's own location, the
// document's, is not repeated in the message.
func (v *vetting) addDoc(d *load.Document, code string, err error) {
	msg := err.Error()
	var le *load.Error
	if errors.As(err, &le) {
		msg = le.Err.Error()
	}
	v.add(Finding{Code: code, File: v.rel(d.File), Line: d.Line, Object: objectID(d), Message: msg})
}

// rel is file relative to the vetted directory.
func (v *vetting) rel(file string) string {
	r, err := filepath.Rel(v.dir, file)
	if err != nil || strings.HasPrefix(r, "..") {
		return filepath.ToSlash(file)
	}
	if r == "." {
		return ""
	}
	return filepath.ToSlash(r)
}

func groupKind(d *load.Document) string {
	if g := groupOf(d.APIVersion()); g != "" {
		return g + "/" + d.Kind()
	}
	return d.Kind()
}

// objectID is "group/Kind namespace/name" (the group left out for core kinds).
func objectID(d *load.Document) string {
	name := d.Name()
	if ns := d.Namespace(); ns != "" {
		name = ns + "/" + name
	}
	return groupKind(d) + " " + name
}

func groupOf(apiVersion string) string {
	if i := strings.Index(apiVersion, "/"); i >= 0 {
		return apiVersion[:i]
	}
	return ""
}

func (v *vetting) allowedKinds() []schema.GroupKind {
	if len(v.opts.AllowedKinds) > 0 {
		return v.opts.AllowedKinds
	}
	return DefaultAllowedKinds
}

func (v *vetting) allowed(d *load.Document) bool {
	g, k := groupOf(d.APIVersion()), d.Kind()
	if v.params[schema.GroupKind{Group: g, Kind: k}] {
		return true
	}
	for _, a := range v.allowedKinds() {
		if a.Group == g && (a.Kind == k || a.Kind == "*" || g == apis.ConstraintsGroup) {
			return true
		}
	}
	return false
}

func (v *vetting) allowedList() string {
	if len(v.opts.AllowedKinds) == 0 {
		return "only policy kinds are (templates, constraints, Config, SyncSet, ExpansionTemplate, mutators, admission policies and bindings, and the paramKinds of policies in the commit)"
	}
	s := []string{"the allowed kinds are"}
	for _, a := range v.allowedKinds() {
		s = append(s, a.Group+"/"+a.Kind)
	}
	return s[0] + " " + strings.Join(s[1:], ", ")
}

// paramKinds are the kinds the commit's ValidatingAdmissionPolicies take
// parameters of.
func paramKinds(docs []*load.Document) map[schema.GroupKind]bool {
	out := map[schema.GroupKind]bool{}
	for _, d := range docs {
		if policyset.Classify(d) != policyset.ValidatingAdmissionPolicy {
			continue
		}
		spec, _ := d.Object["spec"].(map[string]any)
		pk, _ := spec["paramKind"].(map[string]any)
		av, _ := pk["apiVersion"].(string)
		kind, _ := pk["kind"].(string)
		if kind != "" {
			out[schema.GroupKind{Group: groupOf(av), Kind: kind}] = true
		}
	}
	return out
}

// dropDuplicates reports every document naming an object an earlier one
// names (group, kind, namespace, name: versions are one object) and keeps
// the first. A copy equal to the first is dropped without a finding:
// applying it changes nothing.
func (v *vetting) dropDuplicates(docs []*load.Document) []*load.Document {
	seen := map[string]*load.Document{}
	var out []*load.Document
	objects := v.res.Objects[:0]
	for i, d := range docs {
		key := groupKind(d) + "\x00" + d.Namespace() + "\x00" + d.Name()
		if prev, ok := seen[key]; ok && d.Name() != "" {
			if reflect.DeepEqual(prev.Object, d.Object) {
				continue
			}
			v.addDoc(d, CodeDuplicateObject, fmt.Errorf("%s is also defined at %s:%d", objectID(d), v.rel(prev.File), prev.Line))
			continue
		}
		seen[key] = d
		out = append(out, d)
		objects = append(objects, v.res.Objects[i])
	}
	v.res.Objects = objects
	return out
}
