// Package policyset sorts loaded documents into policies (templates,
// constraints, expansion templates, Config, mutators) and everything else, and loads
// the policies into an engine in dependency order with errors that point at
// the file and line of the offending document. The CLI, git sync validation
// and tests share it so that they all accept and reject the same inputs.
package policyset

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
)

// Class is what a document is to Bouncer.
type Class int

// Classes of documents.
const (
	Object Class = iota
	Template
	Constraint
	Expansion
	Config
	Suite
	ValidatingAdmissionPolicy
	ValidatingAdmissionPolicyBinding
	// Mutator is one of Gatekeeper's mutators (Assign, AssignMetadata,
	// ModifySet, AssignImage): a policy, never an object to review.
	Mutator
)

// Classify tells policies from objects by apiVersion and kind.
func Classify(d *load.Document) Class {
	group := groupOf(d.APIVersion())
	kind := d.Kind()
	switch {
	case group == apis.TemplatesGroup && kind == apis.KindConstraintTemplate:
		return Template
	case group == apis.ConstraintsGroup:
		return Constraint
	case group == apis.ExpansionGroup && kind == apis.KindExpansionTemplate:
		return Expansion
	case group == apis.ConfigGroup && kind == apis.KindConfig:
		return Config
	case group == apis.SuiteGroup && kind == apis.KindSuite:
		return Suite
	case group == "admissionregistration.k8s.io" && kind == "ValidatingAdmissionPolicy":
		return ValidatingAdmissionPolicy
	case group == "admissionregistration.k8s.io" && kind == "ValidatingAdmissionPolicyBinding":
		return ValidatingAdmissionPolicyBinding
	case mutation.IsMutator(d.APIVersion(), kind):
		return Mutator
	}
	return Object
}

func groupOf(apiVersion string) string {
	if i := strings.Index(apiVersion, "/"); i >= 0 {
		return apiVersion[:i]
	}
	return ""
}

// Set collects policy documents.
type Set struct {
	Templates   []*load.Document
	Constraints []*load.Document
	Expansions  []*load.Document
	Configs     []*load.Document
	VAPs        []*load.Document
	VAPBindings []*load.Document
	Mutators    []*load.Document
}

// Add files a document if it is a policy and reports whether it was.
func (s *Set) Add(d *load.Document) bool {
	switch Classify(d) {
	case Template:
		s.Templates = append(s.Templates, d)
	case Constraint:
		s.Constraints = append(s.Constraints, d)
	case Expansion:
		s.Expansions = append(s.Expansions, d)
	case Config:
		s.Configs = append(s.Configs, d)
	case ValidatingAdmissionPolicy:
		s.VAPs = append(s.VAPs, d)
	case ValidatingAdmissionPolicyBinding:
		s.VAPBindings = append(s.VAPBindings, d)
	case Mutator:
		s.Mutators = append(s.Mutators, d)
	case Suite:
	default:
		return false
	}
	return true
}

// Empty reports whether the set holds no policy that can produce a result.
func (s *Set) Empty() bool {
	return len(s.Constraints) == 0 && len(s.VAPBindings) == 0
}

// LoadInto compiles every template, then adds constraints and expansions.
// All problems are reported together, each prefixed with file:line.
func (s *Set) LoadInto(e *engine.Engine) error {
	var errs []error
	seen := map[string]*load.Document{}
	type pending struct {
		doc *load.Document
		tpl *apis.ConstraintTemplate
		ct  *engine.Template
		err error
	}
	var todo []*pending
	for _, d := range s.Templates {
		var t apis.ConstraintTemplate
		if err := load.Into(d, &t); err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, ok := seen[t.Name]; ok {
			errs = append(errs, located(d, fmt.Errorf("template %q is also defined at %s", t.Name, prev.Location())))
			continue
		}
		seen[t.Name] = d
		todo = append(todo, &pending{doc: d, tpl: &t})
	}
	// Compiling is most of loading: do it on every CPU, then add the
	// templates in input order so that conflicts are reported the same way
	// every time.
	parallel(len(todo), func(i int) { todo[i].ct, todo[i].err = e.CompileTemplate(todo[i].tpl) })
	for _, p := range todo {
		if p.err == nil {
			_, p.err = e.AddCompiled(p.ct)
		}
		if p.err != nil {
			errs = append(errs, located(p.doc, p.err))
		}
	}
	for _, d := range s.Expansions {
		var x apis.ExpansionTemplate
		if err := load.Into(d, &x); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := e.AddExpansion(&x); err != nil {
			errs = append(errs, located(d, err))
		}
	}
	// In a cluster the second of two constraints with one kind and name
	// replaces the first: in one input that is a copy-paste mistake.
	seenConstraints := map[string]*load.Document{}
	for _, d := range s.Constraints {
		var c apis.Constraint
		if err := load.Into(d, &c); err != nil {
			errs = append(errs, err)
			continue
		}
		id := c.Kind + "/" + c.Name
		if prev, ok := seenConstraints[id]; ok && c.Name != "" {
			errs = append(errs, located(d, fmt.Errorf("constraint %s is also defined at %s", id, prev.Location())))
			continue
		}
		seenConstraints[id] = d
		if _, err := e.AddConstraint(&c); err != nil {
			errs = append(errs, located(d, err))
		}
	}
	return errors.Join(errs...)
}

// LoadMutators compiles every mutator into a new mutation System. Invalid
// mutators, a second mutator of one kind and name, and schema conflicts are
// all reported together, each prefixed with file:line.
func (s *Set) LoadMutators() (*mutation.System, error) {
	sys := mutation.NewSystem()
	var errs []error
	seen := map[mutation.ID]*load.Document{}
	for _, d := range s.Mutators {
		m, err := mutation.Decode(d.Object)
		if err != nil {
			errs = append(errs, located(d, err))
			continue
		}
		if prev, ok := seen[m.ID()]; ok {
			errs = append(errs, located(d, fmt.Errorf("mutator %s is also defined at %s", m.ID(), prev.Location())))
			continue
		}
		seen[m.ID()] = d
		// Conflicts are read once every mutator is in: a later one can
		// conflict with an earlier one.
		_ = sys.Add(m)
	}
	conflicts := sys.Conflicts()
	for _, id := range sys.Mutators() {
		if err := conflicts[id]; err != nil {
			errs = append(errs, located(seen[id], fmt.Errorf("mutator %s: %w", id, err)))
		}
	}
	return sys, errors.Join(errs...)
}

// ExcludedNamespaces returns the namespaces the Config exempts from a
// process ("webhook", "audit", ...), including those listed for "*".
func (s *Set) ExcludedNamespaces(process string) []string {
	var out []string
	for _, d := range s.Configs {
		var c apis.Config
		if load.Into(d, &c) != nil {
			continue
		}
		for _, m := range c.Spec.Match {
			for _, p := range m.Processes {
				if p == "*" || p == process {
					out = append(out, m.ExcludedNamespaces...)
					break
				}
			}
		}
	}
	return out
}

func located(d *load.Document, err error) error {
	return &load.Error{File: d.File, Line: d.Line, Err: err}
}

// parallel runs fn(0..n-1) on up to GOMAXPROCS goroutines.
func parallel(n int, fn func(int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
