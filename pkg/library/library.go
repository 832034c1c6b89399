// Package library reads Bouncer's built-in policy library (embedded from the
// repository's library/ directory): one directory per policy holding a
// ConstraintTemplate, a sample constraint, samples, a suite and a README.
// It parses the templates' annotations (title, severity, bundles, the
// standards a policy implements) and filters policies by them, for the
// `bouncer library` command and for tests.
//
// It depends only on pkg/apis and the embedded files; it never compiles or
// evaluates policies (that is pkg/engine's job).
package library

//go:generate go run ./gen ../../library/README.md

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/bouncer-policy/bouncer/library"
	"github.com/bouncer-policy/bouncer/pkg/apis"
	"sigs.k8s.io/yaml"
)

// Annotation keys of the library's metadata scheme (docs/annotations.md).
const (
	AnnotationTitle       = "metadata.gatekeeper.sh/title"
	AnnotationDescription = "description"
	AnnotationSeverity    = "bouncer.dev/severity"
	AnnotationBundles     = "bouncer.dev/bundles"
	AnnotationPSS         = "bouncer.dev/pss"
	AnnotationCIS         = "bouncer.dev/cis"
	AnnotationMITRE       = "bouncer.dev/mitre"
	AnnotationNSA         = "bouncer.dev/nsa"
	AnnotationCVEs        = "bouncer.dev/cves"
)

// Severities are the allowed values of bouncer.dev/severity, lowest first.
var Severities = []string{"low", "medium", "high", "critical"}

// Standards that --standard accepts.
var Standards = []string{"pss", "cis", "nsa", "mitre"}

// ExpansionDir holds the library's ExpansionTemplates, not a policy.
const ExpansionDir = "expansion"

// Policy is one library policy.
type Policy struct {
	// Name is the policy's directory under library/.
	Name string `json:"name"`
	// TemplateName and Kind identify the template and its constraint kind.
	TemplateName string   `json:"templateName"`
	Kind         string   `json:"kind"`
	Title        string   `json:"title"`
	Description  string   `json:"description"`
	Severity     string   `json:"severity"`
	Bundles      []string `json:"bundles"`
	PSS          []string `json:"pss,omitempty"`
	CIS          []string `json:"cis,omitempty"`
	NSA          []string `json:"nsa,omitempty"`
	MITRE        []string `json:"mitre,omitempty"`
	CVEs         []string `json:"cves,omitempty"`
	// Template and Constraint are the files as written.
	Template   []byte `json:"-"`
	Constraint []byte `json:"-"`
	README     string `json:"-"`
	// Annotations are all of the template's annotations.
	Annotations map[string]string `json:"-"`
}

// Standards lists the standards the policy maps to ("pss", "cis", "nsa",
// "mitre").
func (p Policy) Standards() []string {
	var out []string
	if len(p.PSS) > 0 {
		out = append(out, "pss")
	}
	if len(p.CIS) > 0 {
		out = append(out, "cis")
	}
	if len(p.NSA) > 0 {
		out = append(out, "nsa")
	}
	if len(p.MITRE) > 0 {
		out = append(out, "mitre")
	}
	return out
}

// FS returns the embedded library tree.
func FS() fs.FS { return library.FS }

// Policies parses every policy of the embedded library, sorted by name.
func Policies() ([]Policy, error) { return Load(library.FS) }

// Load parses every policy directory (one holding template.yaml) of fsys.
func Load(fsys fs.FS) ([]Policy, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("reading library: %w", err)
	}
	var out []Policy
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := fs.Stat(fsys, path.Join(e.Name(), "template.yaml")); err != nil {
			continue
		}
		p, err := loadPolicy(fsys, e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(errs...)
}

func loadPolicy(fsys fs.FS, dir string) (Policy, error) {
	p := Policy{Name: dir}
	var err error
	if p.Template, err = fs.ReadFile(fsys, path.Join(dir, "template.yaml")); err != nil {
		return p, fmt.Errorf("library/%s: %w", dir, err)
	}
	var t apis.ConstraintTemplate
	if err := yaml.Unmarshal(p.Template, &t); err != nil {
		return p, fmt.Errorf("library/%s/template.yaml: %w", dir, err)
	}
	if t.Kind != apis.KindConstraintTemplate {
		return p, fmt.Errorf("library/%s/template.yaml: kind is %q, want %s", dir, t.Kind, apis.KindConstraintTemplate)
	}
	p.TemplateName = t.Name
	p.Kind = t.Spec.CRD.Spec.Names.Kind
	a := t.GetAnnotations()
	p.Annotations = a
	p.Title = a[AnnotationTitle]
	p.Description = a[AnnotationDescription]
	p.Severity = a[AnnotationSeverity]
	p.Bundles = splitList(a[AnnotationBundles])
	p.PSS = splitList(a[AnnotationPSS])
	p.CIS = splitList(a[AnnotationCIS])
	p.NSA = splitList(a[AnnotationNSA])
	p.MITRE = splitList(a[AnnotationMITRE])
	p.CVEs = splitList(a[AnnotationCVEs])
	if b, err := fs.ReadFile(fsys, path.Join(dir, "constraint.yaml")); err == nil {
		p.Constraint = b
	}
	if b, err := fs.ReadFile(fsys, path.Join(dir, "README.md")); err == nil {
		p.README = string(b)
	}
	return p, nil
}

// splitList reads a comma-separated annotation value.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Get returns the policy with the given name (its directory), template name
// or constraint kind, case-insensitively.
func Get(policies []Policy, name string) (Policy, bool) {
	for _, p := range policies {
		if strings.EqualFold(p.Name, name) || strings.EqualFold(p.TemplateName, name) || strings.EqualFold(p.Kind, name) {
			return p, true
		}
	}
	return Policy{}, false
}

// Filter selects policies; empty fields select everything.
type Filter struct {
	// Bundle keeps policies in this bundle.
	Bundle string
	// Standard keeps policies that map to "pss", "cis", "nsa" or "mitre".
	Standard string
	// CVE keeps policies that address this CVE.
	CVE string
	// Names keeps the policies named (directory, template name or kind),
	// so that one policy can be exported on its own.
	Names []string
}

// Check reports an unknown standard.
func (f Filter) Check() error {
	if f.Standard != "" && !slices.Contains(Standards, strings.ToLower(f.Standard)) {
		return fmt.Errorf("unknown standard %q: want one of %s", f.Standard, strings.Join(Standards, ", "))
	}
	return nil
}

// Match reports whether p passes the filter.
func (f Filter) Match(p Policy) bool {
	if f.Bundle != "" && !containsFold(p.Bundles, f.Bundle) {
		return false
	}
	if f.Standard != "" && !slices.Contains(p.Standards(), strings.ToLower(f.Standard)) {
		return false
	}
	if f.CVE != "" && !containsFold(p.CVEs, f.CVE) {
		return false
	}
	if len(f.Names) > 0 {
		named := slices.ContainsFunc(f.Names, func(n string) bool {
			_, ok := Get([]Policy{p}, n)
			return ok
		})
		if !named {
			return false
		}
	}
	return true
}

// Apply returns the policies that pass the filter, in order.
func (f Filter) Apply(policies []Policy) []Policy {
	var out []Policy
	for _, p := range policies {
		if f.Match(p) {
			out = append(out, p)
		}
	}
	return out
}

// Bundles lists every bundle named by the policies, sorted.
func Bundles(policies []Policy) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range policies {
		for _, b := range p.Bundles {
			if !seen[b] {
				seen[b] = true
				out = append(out, b)
			}
		}
	}
	sort.Strings(out)
	return out
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// Expansions returns the library's ExpansionTemplates (a multi-document
// YAML file), which let Pod policies review workloads.
func Expansions() ([]byte, error) {
	return fs.ReadFile(library.FS, path.Join(ExpansionDir, "expansion.yaml"))
}
