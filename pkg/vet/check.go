package vet

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"github.com/bouncer-policy/bouncer/pkg/vap"
	"golang.org/x/sync/errgroup"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// configName is the only Config name Gatekeeper, and Bouncer, read.
const configName = "config"

// checkPolicies loads the policies into a fresh engine as the cluster's
// controllers would, one document at a time, so that each problem is a
// finding of its own document.
func (v *vetting) checkPolicies(docs []*load.Document) error {
	e, err := policyset.NewEngine(0, v.opts.Engine)
	if err != nil {
		return fmt.Errorf("vet engine: %w", err)
	}
	var set policyset.Set
	for _, d := range docs {
		set.Add(d)
	}
	failedKinds := v.checkTemplates(e, set.Templates)
	for _, d := range set.Expansions {
		var x apis.ExpansionTemplate
		if err := load.Into(d, &x); err != nil {
			v.addDoc(d, CodeInvalidObject, err)
		} else if err := e.AddExpansion(&x); err != nil {
			v.addDoc(d, CodeExpansion, err)
		}
	}
	if err := v.checkConstraints(e, set.Constraints, failedKinds); err != nil {
		return err
	}
	for _, d := range set.Configs {
		var c apis.Config
		if err := load.Into(d, &c); err != nil {
			v.addDoc(d, CodeInvalidObject, err)
		} else if c.Name != configName {
			v.addDoc(d, CodeConfig, fmt.Errorf("a Config named %q is never read: only the one named %q is", c.Name, configName))
		}
	}
	v.checkMutators(set.Mutators)
	v.checkVAPs(&set, docs)
	for _, d := range docs {
		if groupOf(d.APIVersion()) != "admissionregistration.k8s.io" {
			continue
		}
		var err error
		switch d.Kind() {
		case "MutatingAdmissionPolicy":
			err = load.Into(d, &admissionregistrationv1.MutatingAdmissionPolicy{})
		case "MutatingAdmissionPolicyBinding":
			err = load.Into(d, &admissionregistrationv1.MutatingAdmissionPolicyBinding{})
		}
		if err != nil {
			v.addDoc(d, CodeInvalidObject, err)
		}
	}
	return nil
}

// checkTemplates compiles every template in every engine it carries
// (engine.CompileEveryEngine, as the template controller does) and adds
// those that compile. It returns the constraint kinds of templates that
// failed, so their constraints are not also reported as orphans.
func (v *vetting) checkTemplates(e *engine.Engine, docs []*load.Document) map[string]*load.Document {
	failed := map[string]*load.Document{}
	type compiled struct {
		tpl *apis.ConstraintTemplate
		ct  *engine.Template
		err error
	}
	out := make([]compiled, len(docs))
	for i, d := range docs {
		var t apis.ConstraintTemplate
		out[i].err = load.Into(d, &t)
		out[i].tpl = &t
	}
	// Compiling is most of vetting a large commit: use every CPU.
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range out {
		if out[i].err == nil {
			g.Go(func() error {
				out[i].ct, out[i].err = e.CompileEveryEngine(out[i].tpl)
				return nil
			})
		}
	}
	_ = g.Wait()
	for i, d := range docs {
		c := out[i]
		if c.err == nil {
			_, c.err = e.AddCompiled(c.ct)
		}
		if c.err != nil {
			if kind := c.tpl.Spec.CRD.Spec.Names.Kind; kind != "" {
				failed[kind] = d
			}
			code := CodeTemplate
			var le *load.Error
			if errors.As(c.err, &le) {
				code = CodeInvalidObject
			}
			v.addDoc(d, code, c.err)
		}
	}
	return failed
}

// checkConstraints checks each constraint: match, enforcement actions and
// parameters are checked against its template in the commit. A template
// only in the cluster (Options.KnownTemplate) is not at hand, so such a
// constraint's parameters are not checked, the rest is.
func (v *vetting) checkConstraints(e *engine.Engine, docs []*load.Document, failedKinds map[string]*load.Document) error {
	var stubs *engine.Engine
	for _, d := range docs {
		var c apis.Constraint
		if err := load.Into(d, &c); err != nil {
			v.addDoc(d, CodeInvalidObject, err)
			continue
		}
		if err := constraintMeta(&c); err != nil {
			v.addDoc(d, CodeConstraint, err)
			continue
		}
		// Checked, not added: adding copies the engine's index each time,
		// which for a commit of 10,000 constraints is most of the run, and
		// vet evaluates nothing.
		err := e.CheckConstraint(&c)
		var missing *engine.NoTemplateError
		if !errors.As(err, &missing) {
			if err != nil {
				v.addDoc(d, CodeConstraint, err)
			}
			continue
		}
		if t, ok := failedKinds[c.Kind]; ok {
			v.addDoc(d, CodeConstraint, fmt.Errorf("constraint %s/%s: its template, at %s:%d, does not compile", c.Kind, c.Name, v.rel(t.File), t.Line))
			continue
		}
		if v.opts.KnownTemplate == nil || !v.opts.KnownTemplate(c.Kind) {
			v.addDoc(d, CodeConstraint, fmt.Errorf("%w, neither in the commit nor in the cluster", err))
			continue
		}
		if stubs == nil {
			var err error
			if stubs, err = policyset.NewEngine(0, ""); err != nil {
				return fmt.Errorf("vet engine: %w", err)
			}
		}
		if err := checkWithStub(stubs, &c); err != nil {
			v.addDoc(d, CodeConstraint, err)
		}
	}
	return nil
}

// constraintMeta refuses what the apiserver refuses in a constraint's
// metadata and the engine does not check: the object-meta rules every
// custom resource meets (name a DNS subdomain, valid labels, annotations,
// finalizers; constraints are cluster-scoped) and the 63-character name
// limit of the constraint CRD's schema (controller.ConstraintCRD).
func constraintMeta(c *apis.Constraint) error {
	if c.Name == "" {
		return nil // the engine reports it, in its words
	}
	// A cluster-scoped object's namespace is dropped by the apiserver (and
	// the applier), not refused.
	om := c.ObjectMeta
	om.Namespace = ""
	var errs field.ErrorList
	errs = append(errs, apimachineryvalidation.ValidateObjectMeta(&om, false, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))...)
	if len(c.Name) > maxConstraintName {
		errs = append(errs, field.TooLong(field.NewPath("metadata", "name"), c.Name, maxConstraintName))
	}
	if len(errs) > 0 {
		return fmt.Errorf("constraint %s/%s: %w", c.Kind, c.Name, errs.ToAggregate())
	}
	return nil
}

// maxConstraintName is the constraint CRD schema's metadata.name maxLength.
const maxConstraintName = 63

// checkWithStub checks a constraint whose template is in the cluster
// against a stand-in template of its kind that takes any parameters.
func checkWithStub(e *engine.Engine, c *apis.Constraint) error {
	if e.CheckConstraint(c) != nil {
		stub := &apis.ConstraintTemplate{
			Spec: apis.ConstraintTemplateSpec{
				CRD:     apis.CRD{Spec: apis.CRDSpec{Names: apis.Names{Kind: c.Kind}}},
				Targets: []apis.Target{{Target: apis.AdmissionTarget, Rego: "package vetstub\nviolation[{\"msg\": \"never\"}] { false }\n"}},
			},
		}
		stub.Name = strings.ToLower(c.Kind)
		if _, err := e.AddTemplate(stub); err != nil {
			return fmt.Errorf("constraint %s/%s: %w", c.Kind, c.Name, err)
		}
	}
	return e.CheckConstraint(c)
}

// checkVAPs compiles ValidatingAdmissionPolicies and their bindings with
// the commit's objects as params. Errors that name no document are
// findings of the directory.
func (v *vetting) checkVAPs(set *policyset.Set, docs []*load.Document) {
	if !set.HasVAPs() {
		return
	}
	objs := make([]map[string]any, len(docs))
	for i, d := range docs {
		objs[i] = d.Object
	}
	_, err := set.LoadVAPs(vap.NewObjects(objs))
	for _, e := range unjoin(err) {
		var le *load.Error
		if !errors.As(e, &le) {
			v.add(Finding{Code: CodePolicy, Message: e.Error()})
			continue
		}
		f := Finding{Code: CodePolicy, File: v.rel(le.File), Line: le.Line, Message: le.Err.Error()}
		if d := docAt(docs, le.File, le.Line); d != nil {
			f.Object = objectID(d)
		}
		v.add(f)
	}
}

// unjoin lists the errors errors.Join put together.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// docAt is the one document at file:line, or nil when none or several
// (kustomize output all sits at its kustomization's line 1).
func docAt(docs []*load.Document, file string, line int) *load.Document {
	var found *load.Document
	for _, d := range docs {
		if d.File == file && d.Line == line {
			if found != nil {
				return nil
			}
			found = d
		}
	}
	return found
}

// checkMutators compiles every mutator as the mutating webhook would, and
// reports schema conflicts: the webhook would apply none of the mutators
// involved.
func (v *vetting) checkMutators(docs []*load.Document) {
	sys := mutation.NewSystem()
	byID := map[mutation.ID]*load.Document{}
	for _, d := range docs {
		m, err := mutation.Decode(d.Object)
		if err != nil {
			v.addDoc(d, CodeMutator, err)
			continue
		}
		byID[m.ID()] = d
		_ = sys.Add(m)
	}
	conflicts := sys.Conflicts()
	for _, id := range sys.Mutators() {
		if err := conflicts[id]; err != nil {
			v.addDoc(byID[id], CodeMutator, err)
		}
	}
}
