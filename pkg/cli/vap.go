package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"github.com/bouncer-policy/bouncer/pkg/vap"
)

// loadVAPs compiles the set's ValidatingAdmissionPolicies into e's policy
// driver, with objects (inventory and non-policy input) and constraints as
// parameter objects (generated bindings' paramRefs name constraints).
func loadVAPs(e *engine.Engine, set *policyset.Set, objects []map[string]any) error {
	if !set.HasVAPs() {
		return nil
	}
	params := append([]map[string]any{}, objects...)
	for _, d := range set.Constraints {
		params = append(params, d.Object)
	}
	vs, err := set.LoadVAPs(vap.NewObjects(params))
	if err != nil {
		return err
	}
	return e.SetPolicies(vs)
}

// loadVAPTest loads a Suite test that gives policy and binding paths into
// an engine's policy driver. Other objects in those files, and each case's
// inventory, are parameter objects.
func loadVAPTest(dir string, t apis.SuiteTest, o VerifyOptions, only string) (caseEvaluator, error) {
	if t.Policy == "" || t.Binding == "" {
		return nil, errors.New("a policy test needs policy and binding")
	}
	set := &policyset.Set{}
	var fixed []map[string]any
	for _, p := range []string{t.Policy, t.Binding} {
		n := 0
		err := load.Walk([]string{filepath.Join(dir, p)}, load.Options{}, func(d *load.Document) error {
			n++
			switch policyset.Classify(d) {
			case policyset.ValidatingAdmissionPolicy, policyset.ValidatingAdmissionPolicyBinding:
				set.Add(d)
			case policyset.Object:
				fixed = append(fixed, d.Object)
			default:
				return &load.Error{File: d.File, Line: d.Line, Err: fmt.Errorf("%s %q does not belong in a policy test", d.Kind(), d.Name())}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no document", p)
		}
	}
	params := vap.NewObjects(fixed)
	vs, err := set.LoadVAPs(params)
	if err != nil {
		return nil, err
	}
	if vs.Bindings() == 0 {
		return nil, errors.New("no ValidatingAdmissionPolicyBinding loaded")
	}
	e, err := policyset.NewEngineSharing(o.Timeout, only, o.programs)
	if err != nil {
		return nil, err
	}
	if err := e.SetPolicies(vs); err != nil {
		return nil, err
	}
	return &vapEvaluator{e: e, params: params, fixed: fixed}, nil
}

// vapEvaluator reviews through the engine, with each case's inventory as
// parameter objects.
type vapEvaluator struct {
	e      *engine.Engine
	params *vap.Objects
	fixed  []map[string]any
}

func (x *vapEvaluator) evaluate(ctx context.Context, r *engine.Review, inv []map[string]any) (*engine.Response, error) {
	x.params.Replace(append(append([]map[string]any{}, x.fixed...), inv...))
	return x.e.Review(ctx, r, engine.AtEnforcementPoint(apis.PointCLI))
}

// GenerateVAP writes, as YAML, a ValidatingAdmissionPolicy for every
// K8sNativeValidation template under paths and a binding for every
// constraint of those templates, as Gatekeeper generates them.
func GenerateVAP(paths []string, stdin io.Reader, w io.Writer) error {
	if len(paths) == 0 {
		return errors.New("no input: give files, directories, kustomize directories or - for stdin")
	}
	type templateDoc struct {
		doc *load.Document
		t   *apis.ConstraintTemplate
	}
	type constraintDoc struct {
		doc *load.Document
		c   *apis.Constraint
	}
	var templates []templateDoc
	var constraints []constraintDoc
	err := load.Walk(paths, load.Options{Stdin: stdin}, func(d *load.Document) error {
		switch policyset.Classify(d) {
		case policyset.Template:
			t := &apis.ConstraintTemplate{}
			if err := load.Into(d, t); err != nil {
				return err
			}
			templates = append(templates, templateDoc{d, t})
		case policyset.Constraint:
			c := &apis.Constraint{}
			if err := load.Into(d, c); err != nil {
				return err
			}
			constraints = append(constraints, constraintDoc{d, c})
		}
		return nil
	})
	if err != nil {
		return err
	}
	kinds := map[string]bool{}
	var docs []any
	var errs []error
	for _, t := range templates {
		if !hasCEL(t.t) {
			continue
		}
		p, err := vap.FromTemplate(t.t)
		if err != nil {
			errs = append(errs, &load.Error{File: t.doc.File, Line: t.doc.Line, Err: err})
			continue
		}
		kinds[t.t.Spec.CRD.Spec.Names.Kind] = true
		docs = append(docs, p)
	}
	sort.SliceStable(constraints, func(i, j int) bool { return constraints[i].c.Name < constraints[j].c.Name })
	for _, c := range constraints {
		if !kinds[c.c.Kind] {
			continue
		}
		b, err := vap.FromConstraint(c.c)
		if err != nil {
			errs = append(errs, &load.Error{File: c.doc.File, Line: c.doc.Line, Err: err})
			continue
		}
		docs = append(docs, b)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(docs) == 0 {
		return fmt.Errorf("no template with %s code found", apis.EngineCEL)
	}
	for i, d := range docs {
		b, err := marshalClean(d)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(w, "---")
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func hasCEL(t *apis.ConstraintTemplate) bool {
	for _, tg := range t.Spec.Targets {
		for _, c := range tg.Code {
			if c.Engine == apis.EngineCEL {
				return true
			}
		}
	}
	return false
}

// marshalClean renders an API object without the empty status and null
// creationTimestamp that typed objects carry.
func marshalClean(obj any) ([]byte, error) {
	ro, ok := obj.(runtime.Object)
	if !ok {
		return yaml.Marshal(obj)
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ro)
	if err != nil {
		return nil, err
	}
	delete(u, "status")
	if m, ok := u["metadata"].(map[string]any); ok {
		delete(m, "creationTimestamp")
	}
	return yaml.Marshal(u)
}
