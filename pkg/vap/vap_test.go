package vap_test

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"github.com/bouncer-policy/bouncer/pkg/vap"
)

func read(t *testing.T, paths ...string) []*load.Document {
	t.Helper()
	var docs []*load.Document
	if err := load.Walk(paths, load.Options{}, func(d *load.Document) error {
		docs = append(docs, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return docs
}

func review(t *testing.T, d *load.Document) *engine.Review {
	t.Helper()
	if d.Kind() == "AdmissionReview" {
		r, err := engine.ReviewFromRequest(d.Object["request"].(map[string]any))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	return engine.ObjectReview(d.Object, "CREATE", nil)
}

func messages(rs []engine.Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Message)
	}
	sort.Strings(out)
	return out
}

// TestGeneratedPolicyAgreesWithTemplate: the policy and binding generated
// from the CEL example, evaluated by pkg/vap with the constraint as the
// parameter object, give the engine's verdicts on every sample.
func TestGeneratedPolicyAgreesWithTemplate(t *testing.T) {
	dir := "../../examples/cel-disallowed-tags"
	set := &policyset.Set{}
	for _, d := range read(t, filepath.Join(dir, "template.yaml"), filepath.Join(dir, "constraint.yaml")) {
		set.Add(d)
	}
	e, err := policyset.NewEngine(0, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := set.LoadInto(e); err != nil {
		t.Fatal(err)
	}
	var tpl apis.ConstraintTemplate
	var con apis.Constraint
	if err := load.Into(set.Templates[0], &tpl); err != nil {
		t.Fatal(err)
	}
	if err := load.Into(set.Constraints[0], &con); err != nil {
		t.Fatal(err)
	}
	policy, err := vap.FromTemplate(&tpl)
	if err != nil {
		t.Fatal(err)
	}
	binding, err := vap.FromConstraint(&con)
	if err != nil {
		t.Fatal(err)
	}
	if policy.Name != "gatekeeper-k8sceldisallowedtags" || binding.Spec.PolicyName != policy.Name || binding.Spec.ParamRef.Name != "no-latest" {
		t.Fatalf("names: policy %q, binding -> %q, paramRef %q", policy.Name, binding.Spec.PolicyName, binding.Spec.ParamRef.Name)
	}
	// Round-trip through YAML, as bouncer vap generate writes them.
	for _, obj := range []any{policy, binding} {
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, obj); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := vap.CompileSet([]*admissionregistrationv1.ValidatingAdmissionPolicy{policy},
		[]*admissionregistrationv1.ValidatingAdmissionPolicyBinding{binding},
		vap.NewObjects([]map[string]any{set.Constraints[0].Object}))
	if err != nil {
		t.Fatal(err)
	}
	samples := read(t, filepath.Join(dir, "samples"))
	denied := 0
	for _, d := range samples {
		resp, err := e.Review(context.Background(), review(t, d))
		if err != nil || len(resp.Errors) > 0 {
			t.Fatalf("%s: engine: %v %v", d.File, err, resp.Errors)
		}
		got, err := results(vs.Evaluate(context.Background(), review(t, d), false))
		if err != nil {
			t.Fatalf("%s: vap: %v", d.File, err)
		}
		want := messages(resp.Results)
		if strings.Join(messages(got), "|") != strings.Join(want, "|") {
			t.Errorf("%s: vap %q, engine %q", d.File, messages(got), want)
		}
		for _, r := range got {
			if r.ConstraintKind != vap.Kind || r.ConstraintName != "gatekeeper-no-latest" || r.EnforcementAction != apis.ActionDeny {
				t.Errorf("%s: result %+v", d.File, r)
			}
		}
		if len(want) > 0 {
			denied++
		}
	}
	if denied < 2 || len(samples) < 6 {
		t.Fatalf("samples %d, denied %d: the comparison proves little", len(samples), denied)
	}
}

func loadExample(t *testing.T, binding string, params ...string) *vap.Set {
	t.Helper()
	dir := "../../examples/vap-require-labels"
	set := &policyset.Set{}
	var objs []map[string]any
	paths := []string{filepath.Join(dir, "policy.yaml"), filepath.Join(dir, binding)}
	for _, p := range params {
		paths = append(paths, filepath.Join(dir, p))
	}
	for _, d := range read(t, paths...) {
		if !set.Add(d) {
			objs = append(objs, d.Object)
		}
	}
	vs, err := set.LoadVAPs(vap.NewObjects(objs))
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func evaluate(t *testing.T, vs *vap.Set, sample string) []engine.Result {
	t.Helper()
	docs := read(t, filepath.Join("../../examples/vap-require-labels/samples", sample))
	res, err := results(vs.Evaluate(context.Background(), review(t, docs[0]), false))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// results are a policy driver's results, or its errors.
func results(resp *engine.Response) ([]engine.Result, error) {
	if resp == nil {
		return nil, nil
	}
	var errs []error
	for _, e := range resp.Errors {
		errs = append(errs, e)
	}
	return resp.Results, errors.Join(errs...)
}

func TestValidationActions(t *testing.T) {
	res := evaluate(t, loadExample(t, "binding-warn.yaml"), "deployment-labelled.yaml")
	if len(res) != 1 || res[0].EnforcementAction != apis.ActionWarn || strings.Join(res[0].ScopedActions, ",") != "warn,dryrun" {
		t.Fatalf("results = %+v", res)
	}
	if res[0].Template != "require-labels" || res[0].ConstraintName != "require-labels-warn" {
		t.Fatalf("result names = %+v", res[0])
	}
}

func TestParameterNotFound(t *testing.T) {
	// binding.yaml names a ConfigMap in policy-params with
	// parameterNotFoundAction Deny: without it, every matched object is
	// denied (failurePolicy Fail), whatever its labels.
	dir := "../../examples/vap-require-labels"
	set := &policyset.Set{}
	for _, d := range read(t, filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "binding.yaml")) {
		if d.Kind() != "ConfigMap" {
			set.Add(d)
		}
	}
	vs, err := set.LoadVAPs(vap.NewObjects(nil))
	if err != nil {
		t.Fatal(err)
	}
	res := evaluate(t, vs, "deployment-labelled.yaml")
	if len(res) != 1 || !strings.Contains(res[0].Message, "no params found") || res[0].EnforcementAction != apis.ActionDeny {
		t.Fatalf("results = %+v", res)
	}
	// Not matched by the binding: no parameter needed.
	if res := evaluate(t, vs, "pod-kube-system.yaml"); len(res) != 0 {
		t.Fatalf("kube-system: %+v", res)
	}
}

func TestFailurePolicyIgnore(t *testing.T) {
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	p.Name = "p"
	ignore := admissionregistrationv1.Ignore
	p.Spec.FailurePolicy = &ignore
	p.Spec.MatchConstraints = &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
		RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{"*"},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"*"}, Resources: []string{"*"}},
		},
	}}}
	p.Spec.Validations = []admissionregistrationv1.Validation{{Expression: `object.spec.nodeName == "x"`}, {Expression: "false", Message: "always"}}
	b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	b.Name = "b"
	b.Spec.PolicyName = "p"
	b.Spec.ValidationActions = []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "x", "namespace": "a"}, "spec": map[string]any{}}
	for _, fp := range []admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Ignore, admissionregistrationv1.Fail} {
		p.Spec.FailurePolicy = &fp
		vs, err := vap.CompileSet([]*admissionregistrationv1.ValidatingAdmissionPolicy{p}, []*admissionregistrationv1.ValidatingAdmissionPolicyBinding{b}, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := results(vs.Evaluate(context.Background(), engine.ObjectReview(pod, "", nil), false))
		if err != nil {
			t.Fatal(err)
		}
		want := map[admissionregistrationv1.FailurePolicyType]int{admissionregistrationv1.Ignore: 1, admissionregistrationv1.Fail: 2}[fp]
		if len(res) != want {
			t.Errorf("%s: %d results, want %d: %+v", fp, len(res), want, res)
		}
	}
}

func TestCompileErrorsNameField(t *testing.T) {
	docs := `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: broken}
spec:
  matchConstraints: {resourceRules: [{apiGroups: ["*"], apiVersions: ["*"], operations: ["*"], resources: ["*"]}]}
  validations:
  - expression: "true"
  - expression: "object.metadata.name == params.x"
`
	var p admissionregistrationv1.ValidatingAdmissionPolicy
	if err := yaml.Unmarshal([]byte(docs), &p); err != nil {
		t.Fatal(err)
	}
	_, err := vap.Compile(&p, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `"broken": spec.validations[1].expression: 1:`) || !strings.Contains(err.Error(), "undeclared reference to 'params'") {
		t.Fatalf("error = %v", err)
	}
}
