package cel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// compiledBoth is a template compiled for both evaluators.
type compiledBoth struct {
	prog        engine.Program
	pp          any
	validator   validating.Validator
	po          *unstructured.Unstructured
	validations int
}

func compileBoth(t *testing.T, tpl *apis.ConstraintTemplate, code apis.Code, params map[string]any) *compiledBoth {
	t.Helper()
	prog, err := New().Compile(tpl, code)
	if err != nil {
		t.Fatalf("%s: %v", tpl.GetName(), err)
	}
	pp, err := prog.PrepareParams(params)
	if err != nil {
		t.Fatal(err)
	}
	src, err := DecodeSource(code)
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := src.FailurePolicyType()
	validations := make([]admissionregistrationv1.Validation, len(src.Validations))
	for i, v := range src.Validations {
		validations[i] = admissionregistrationv1.Validation{Expression: v.Expression, Message: v.Message, MessageExpression: v.MessageExpression}
	}
	conds := make([]admissionregistrationv1.MatchCondition, len(src.MatchConditions))
	for i, m := range src.MatchConditions {
		conds[i] = admissionregistrationv1.MatchCondition{Name: m.Name, Expression: m.Expression}
	}
	v, err := NewValidator(Spec{Name: tpl.GetName(), HasParams: true, Variables: src.AllVariables(), Validations: validations, MatchConditions: conds, FailurePolicy: fp})
	if err != nil {
		t.Fatal(err)
	}
	spec := map[string]any{}
	if params != nil {
		spec["parameters"] = params
	}
	po := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apis.ConstraintsGroup + "/v1beta1", "kind": tpl.Spec.CRD.Spec.Names.Kind, "spec": spec}}
	return &compiledBoth{prog: prog, pp: pp, validator: v, po: po, validations: len(validations)}
}

// validatorEval evaluates with the apiserver's generic Validator, as this
// driver did before it evaluated programs itself.
func (c *compiledBoth) validatorEval(t *testing.T, r *engine.Review) ([]engine.Violation, error) {
	t.Helper()
	req, err := NewRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	res := c.validator.Validate(context.Background(), req.Resource, req.Attributes, c.po, req.Namespace, celconfig.RuntimeCELCostBudget, nil)
	var out []engine.Violation
	var errs []error
	for i, d := range res.Decisions {
		switch {
		case d.Evaluation == validating.EvalError:
			if d.Action == validating.ActionDeny {
				if len(res.Decisions) == c.validations {
					errs = append(errs, fmt.Errorf("validations[%d]: %s", i, d.Message))
				} else {
					errs = append(errs, errors.New(d.Message))
				}
			}
		case d.Action == validating.ActionDeny:
			out = append(out, engine.Violation{Message: d.Message})
		}
	}
	return out, errors.Join(errs...)
}

// agree evaluates r with both evaluators and requires the same violations
// and errors.
func (c *compiledBoth) agree(t *testing.T, name string, r *engine.Review) string {
	t.Helper()
	req, err := NewRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	got, gotErr := c.prog.Eval(context.Background(), req, c.pp)
	want, wantErr := c.validatorEval(t, r)
	if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Errorf("%s:\n got %v, %v\nwant %v, %v", name, got, gotErr, want, wantErr)
	}
	return fmt.Sprint(got, gotErr)
}

func celCode(t *testing.T, tpl *apis.ConstraintTemplate) (apis.Code, bool) {
	for _, c := range tpl.Spec.Targets[0].Code {
		if c.Engine == apis.EngineCEL {
			return c, true
		}
	}
	return apis.Code{}, false
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestEvalAgreesWithValidator holds the evaluator to the apiserver's
// Validator on every library template, with the library's constraint, for
// every sample object of the library and each operation.
func TestEvalAgreesWithValidator(t *testing.T) {
	templates, _ := filepath.Glob("../../../library/*/template.yaml")
	samples, _ := filepath.Glob("../../../library/*/samples/*.yaml")
	samples = append(samples, "testdata/library-pod.yaml")
	var objects []map[string]any
	for _, s := range samples {
		var obj map[string]any
		readYAML(t, s, &obj)
		if obj["kind"] == "AdmissionReview" {
			continue
		}
		objects = append(objects, obj)
	}
	if len(templates) < 30 || len(objects) < 50 {
		t.Fatalf("found %d templates and %d objects", len(templates), len(objects))
	}
	ns := map[string]any{"metadata": map[string]any{"name": "shop", "labels": map[string]any{"env": "prod"}}}
	n := 0
	for _, path := range templates {
		var tpl apis.ConstraintTemplate
		readYAML(t, path, &tpl)
		var c apis.Constraint
		readYAML(t, filepath.Join(filepath.Dir(path), "constraint.yaml"), &c)
		code, ok := celCode(t, &tpl)
		if !ok {
			continue
		}
		both := compileBoth(t, &tpl, code, c.Spec.Parameters)
		for i, obj := range objects {
			for _, op := range []string{"CREATE", "DELETE"} {
				r := engine.ObjectReview(obj, op, ns)
				both.agree(t, fmt.Sprintf("%s on %s %s", tpl.GetName(), samples[i], op), r)
				n++
			}
		}
	}
	t.Logf("%d evaluations compared", n)
}

// syntheticTemplate is a template with the given K8sNativeValidation source.
func syntheticTemplate(t *testing.T, src string) *apis.ConstraintTemplate {
	t.Helper()
	doc := `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: k8ssynthetic}
spec:
  crd:
    spec:
      names: {kind: K8sSynthetic}
  targets:
  - target: admission.k8s.gatekeeper.sh
    code:
    - engine: K8sNativeValidation
      source:
`
	for _, l := range strings.Split(strings.TrimSpace(src), "\n") {
		doc += "        " + l + "\n"
	}
	var tpl apis.ConstraintTemplate
	if err := yaml.Unmarshal([]byte(doc), &tpl); err != nil {
		t.Fatal(err)
	}
	return &tpl
}

// loops is an expression whose cost is known only at runtime: three nested
// maps over lists split from the Pod's annotations (sizes n, n and 30).
func loops(n int) string {
	l := func(k int) string { return fmt.Sprintf("object.metadata.annotations.l%d.split(\",\")", k) }
	return fmt.Sprintf("size(%s.map(a, %s.map(b, %s.map(c, a + b + c))))", l(n), l(n), l(30))
}

// expensive is a variable whose cost is close to the per-call limit.
func expensive(name string) string {
	return fmt.Sprintf("- name: %s\n  expression: '%s'", name, loops(40))
}

func list(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprint(i)
	}
	return strings.Join(s, ",")
}

// TestEvalBudgetAgreesWithValidator covers cost accounting: variables
// charged once per phase, message expressions exhausting the budget,
// match conditions, failure policies and runtime errors.
func TestEvalBudgetAgreesWithValidator(t *testing.T) {
	var vars []string
	var uses []string
	for i := range 6 {
		vars = append(vars, expensive(fmt.Sprintf("v%d", i)))
		uses = append(uses, fmt.Sprintf("variables.v%d", i))
	}
	sum := strings.Join(uses, " + ")
	cases := map[string]string{
		// 6 variables of ~0.85M each: used by every validation, they are
		// charged once in the validations (~5M); the message expressions
		// charge them again and run out of budget.
		"recharged in messages": "variables:\n" + strings.Join(vars, "\n") + `
validations:
- expression: '` + sum + ` < 0'
  messageExpression: '"sum " + string(` + sum + `)'
- expression: '` + sum + ` > 0'
  messageExpression: '"never"'
`,
		// Passing validations only: their messages are evaluated and discarded.
		"passing": "variables:\n" + strings.Join(vars[:2], "\n") + `
validations:
- expression: 'variables.v0 + variables.v1 > 0'
  messageExpression: '"x" + string(variables.v0)'
- expression: 'variables.v0 > 0'
`,
		"validations out of budget": "variables:\n" + strings.Join(vars, "\n") + `
validations:
- expression: '` + sum + ` > 0'
- expression: '` + loops(40) + ` > 0 && ` + sum + ` > 0'
- expression: '` + loops(40) + ` > 0 && ` + sum + ` > 0'
- expression: '` + loops(40) + ` > 0 && ` + sum + ` > 0'
- expression: '` + loops(40) + ` > 0 && ` + sum + ` > 0'
- expression: '` + loops(40) + ` > 0 && ` + sum + ` > 0'
- expression: '` + loops(40) + ` > 0 && ` + sum + ` > 0'
- expression: '` + loops(40) + ` > 0 && ` + sum + ` > 0'
- expression: '` + loops(40) + ` > 0 && ` + sum + ` > 0'
- expression: '` + loops(40) + ` > 0 && ` + sum + ` > 0'
`,
		"per-call limit": `
validations:
- expression: '` + loops(100) + ` > 0'
- expression: 'false'
  message: after
`,
		"match false":             "matchCondition:\n- name: m\n  expression: 'object.metadata.name == \"nope\"'\nvalidations:\n- expression: 'false'\n",
		"match error":             "matchCondition:\n- name: m\n  expression: 'object.spec.nodeName == \"x\"'\n- name: other\n  expression: 'true'\nvalidations:\n- expression: 'false'\n",
		"match ignore":            "failurePolicy: Ignore\nmatchCondition:\n- name: m\n  expression: 'object.spec.nodeName == \"x\"'\nvalidations:\n- expression: 'false'\n",
		"match sees no namespace": "matchCondition:\n- name: m\n  expression: 'namespaceObject == null'\nvariables:\n- name: ns\n  expression: 'namespaceObject == null ? \"none\" : namespaceObject.metadata.name'\nvalidations:\n- expression: 'false'\n  messageExpression: 'variables.ns'\n",
		"runtime errors": `
variables:
- name: bad
  expression: 'object.spec.nodeName'
validations:
- expression: 'variables.bad == "x"'
- expression: 'false'
  messageExpression: 'variables.bad'
  message: fallback
- expression: 'false'
  messageExpression: '"a\nb"'
- expression: '  1 == 2  '
`,
		"ignore":                 "failurePolicy: Ignore\nvalidations:\n- expression: 'object.spec.nodeName == \"x\"'\n- expression: 'false'\n  message: ' kept '\n",
		"escaped variable names": "variables:\n- name: a__dot__b\n  expression: '1'\nvalidations:\n- expression: 'variables.a__dot__b == 2'\n  messageExpression: 'string(variables.a__dot__b)'\n",
	}
	annotations := map[string]any{}
	for _, n := range []int{30, 40, 100} {
		annotations[fmt.Sprintf("l%d", n)] = list(n)
	}
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "p", "namespace": "shop", "annotations": annotations}, "spec": map[string]any{"containers": []any{}}}
	for name, src := range cases {
		tpl := syntheticTemplate(t, src)
		code, _ := celCode(t, tpl)
		both := compileBoth(t, tpl, code, nil)
		for _, op := range []string{"CREATE", "DELETE"} {
			got := both.agree(t, name+" "+op, engine.ObjectReview(pod, op, nil))
			t.Logf("%s %s: %s", name, op, got)
		}
	}
}
