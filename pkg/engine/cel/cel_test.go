package cel_test

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
)

// template builds a v1 template of kind K8sTest whose CEL source is src
// (YAML), with a typed parameters schema {tags: [string], limit: integer}.
func template(t *testing.T, src string) *apis.ConstraintTemplate {
	t.Helper()
	doc := `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: k8stest}
spec:
  crd:
    spec:
      names: {kind: K8sTest}
      validation:
        openAPIV3Schema:
          type: object
          properties:
            tags: {type: array, items: {type: string}}
            limit: {type: integer}
  targets:
  - target: admission.k8s.gatekeeper.sh
    code:
    - engine: K8sNativeValidation
      source:
` + indent(src, "        ")
	var ct apis.ConstraintTemplate
	if err := yaml.Unmarshal([]byte(doc), &ct); err != nil {
		t.Fatal(err)
	}
	return &ct
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func newEngine(t testing.TB, only string) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Options{Drivers: []engine.Driver{rego.New(), cel.New()}, OnlyEngine: only})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func constraint(params map[string]any) *apis.Constraint {
	return &apis.Constraint{
		TypeMeta:   metaType("constraints.gatekeeper.sh/v1beta1", "K8sTest"),
		ObjectMeta: objectMeta("c1"),
		Spec:       apis.ConstraintSpec{Parameters: params},
	}
}

func pod(ns string, labels map[string]any, image string) map[string]any {
	meta := map[string]any{"name": "p", "namespace": ns}
	if labels != nil {
		meta["labels"] = labels
	}
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod", "metadata": meta,
		"spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": image}}},
	}
}

// review loads src, one constraint with params and reviews r.
func review(t *testing.T, src string, params map[string]any, r *engine.Review) (*engine.Response, error) {
	t.Helper()
	e := newEngine(t, "")
	if _, err := e.AddTemplate(template(t, src)); err != nil {
		t.Fatalf("AddTemplate: %v", err)
	}
	if _, err := e.AddConstraint(constraint(params)); err != nil {
		t.Fatalf("AddConstraint: %v", err)
	}
	return e.Review(context.Background(), r)
}

func messages(resp *engine.Response) []string {
	var out []string
	for _, r := range resp.Results {
		out = append(out, r.Message)
	}
	sort.Strings(out)
	return out
}

func TestEachVariableIsBound(t *testing.T) {
	src := `
variables:
- name: image
  expression: variables.anyObject.spec.containers[0].image
validations:
- expression: 'object.metadata.name != "p"'
  message: object
- expression: 'oldObject == null || oldObject.metadata.name != "p"'
  message: oldObject
- expression: 'request.operation != "UPDATE" || request.userInfo.username != "alice"'
  message: request
- expression: 'namespaceObject.metadata.labels["env"] != "prod"'
  message: namespaceObject
- expression: 'params.spec.parameters.limit != 3'
  message: params
- expression: '!(variables.image.split(":")[1] in variables.params.tags)'
  message: variables.params and variables.anyObject
`
	obj := pod("shop", nil, "nginx:latest")
	r := engine.ObjectReview(obj, "UPDATE", map[string]any{"metadata": map[string]any{"name": "shop", "labels": map[string]any{"env": "prod"}}})
	r.OldObject = obj
	r.UserInfo = map[string]any{"username": "alice"}
	resp, err := review(t, src, map[string]any{"tags": []any{"latest"}, "limit": int64(3)}, r)
	if err != nil || len(resp.Errors) > 0 {
		t.Fatalf("review: %v %v", err, resp.Errors)
	}
	want := []string{"namespaceObject", "object", "oldObject", "params", "request", "variables.params and variables.anyObject"}
	if got := messages(resp); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("messages = %q, want %q", got, want)
	}
	if resp.Results[0].Template != "k8stest" || resp.Results[0].EnforcementAction != apis.ActionDeny {
		t.Errorf("result = %+v", resp.Results[0])
	}
}

func TestAnyObjectIsOldObjectOnDelete(t *testing.T) {
	src := `
validations:
- expression: 'variables.anyObject.metadata.name != "p"'
  messageExpression: '"saw " + variables.anyObject.metadata.name + " on " + request.operation'
`
	resp, err := review(t, src, nil, engine.ObjectReview(pod("shop", nil, "x:1"), "DELETE", nil))
	if err != nil || len(resp.Errors) > 0 {
		t.Fatalf("review: %v %v", err, resp.Errors)
	}
	if got := messages(resp); len(got) != 1 || got[0] != "saw p on DELETE" {
		t.Fatalf("messages = %q", got)
	}
}

func TestMessageExpressionFallsBackToMessage(t *testing.T) {
	src := `
validations:
- expression: "false"
  message: static
  messageExpression: 'object.metadata.name + " is bad"'
- expression: "false"
  message: static fallback
  messageExpression: '""'
- expression: "1 == 2"
`
	resp, err := review(t, src, nil, engine.ObjectReview(pod("shop", nil, "x:1"), "", nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"failed expression: 1 == 2", "p is bad", "static fallback"}
	if got := messages(resp); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("messages = %q, want %q", got, want)
	}
}

func TestMatchConditions(t *testing.T) {
	for _, field := range []string{"matchCondition", "matchConditions"} {
		src := field + `:
- name: only-labelled
  expression: 'has(object.metadata.labels) && "checked" in object.metadata.labels'
validations:
- expression: "false"
  message: denied
`
		resp, err := review(t, src, nil, engine.ObjectReview(pod("shop", nil, "x:1"), "", nil))
		if err != nil || len(resp.Results) != 0 {
			t.Fatalf("%s: unlabelled pod: %v %+v", field, err, resp)
		}
		resp, err = review(t, src, nil, engine.ObjectReview(pod("shop", map[string]any{"checked": "y"}, "x:1"), "", nil))
		if err != nil || len(resp.Results) != 1 {
			t.Fatalf("%s: labelled pod: %v %+v", field, err, resp)
		}
	}
}

func TestFailurePolicy(t *testing.T) {
	body := `
validations:
- expression: 'object.spec.nodeName == "x"'
  message: never reached
`
	// nodeName is absent: a runtime error ("no such key").
	resp, err := review(t, "failurePolicy: Fail\n"+body, nil, engine.ObjectReview(pod("shop", nil, "x:1"), "", nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Errors) != 1 || !strings.Contains(resp.Errors[0].Error(), "validations[0]") || !strings.Contains(resp.Errors[0].Error(), "no such key") {
		t.Fatalf("Fail: errors = %v", resp.Errors)
	}
	for _, src := range []string{"failurePolicy: Ignore\n" + body} {
		resp, err := review(t, src, nil, engine.ObjectReview(pod("shop", nil, "x:1"), "", nil))
		if err != nil || len(resp.Errors) != 0 || len(resp.Results) != 0 {
			t.Fatalf("Ignore: %v %+v", err, resp)
		}
	}
	e := newEngine(t, "")
	if _, err := e.AddTemplate(template(t, "failurePolicy: Sometimes\n"+body)); err == nil || !strings.Contains(err.Error(), "failurePolicy") {
		t.Fatalf("bad failurePolicy accepted: %v", err)
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"syntax", "validations:\n- expression: 'true'\n- expression: 'object.metadata.name =='\n", "validations[1].expression: 1:"},
		{"undeclared", "validations:\n- expression: 'true'\n- expression: 'objekt.metadata.name == \"x\"'\n", "validations[1].expression: 1:1: undeclared reference to 'objekt'"},
		{"missing variable", "validations:\n- expression: 'variables.nope'\n", "validations[0].expression: 1:10: undefined field 'nope'"},
		{"not bool", "validations:\n- expression: '\"yes\"'\n", "validations[0].expression: must evaluate to bool"},
		{"schema type", "validations:\n- expression: 'params.spec.parameters.limit.startsWith(\"a\")'\n", "type-checked against the parameters schema"},
		{"message not string", "validations:\n- expression: 'true'\n  messageExpression: '1'\n", "validations[0].messageExpression: must evaluate to string"},
		{"variable", "variables:\n- name: a\n  expression: 'object.('\nvalidations:\n- expression: 'true'\n", "variables[0] (a).expression: 1:"},
		{"reserved", "variables:\n- name: params\n  expression: '1'\nvalidations:\n- expression: 'true'\n", `"params" is reserved`},
		{"cost", "validations:\n- expression: '" + costly() + "'\n", "validations[0].expression: estimated cost"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := newEngine(t, "").AddTemplate(template(t, c.src))
			if err == nil {
				t.Fatal("template compiled")
			}
			msg := err.Error()
			if !strings.Contains(msg, `template "k8stest"`) || !strings.Contains(msg, c.want) {
				t.Fatalf("error %q does not name the template and %q", msg, c.want)
			}
		})
	}
}

// costly is an expression that always costs more than Kubernetes' per-call
// limit: three nested maps over 200 literal elements (map cannot stop early).
func costly() string {
	items := make([]string, 200)
	for i := range items {
		items[i] = "1"
	}
	l := "[" + strings.Join(items, ",") + "]"
	return "size(" + l + ".map(a, " + l + ".map(b, " + l + ".map(c, a + b + c)))) > 0"
}

func TestEnginePrefersCEL(t *testing.T) {
	both := template(t, "validations:\n- expression: 'true'\n")
	both.Spec.Targets[0].Code = append(both.Spec.Targets[0].Code, apis.Code{Engine: apis.EngineRego, Source: raw(t, map[string]any{
		"rego": "package k8stest\nviolation[{\"msg\": \"rego\"}] { false }",
	})})
	for only, want := range map[string]string{"": apis.EngineCEL, apis.EngineCEL: apis.EngineCEL, apis.EngineRego: apis.EngineRego} {
		tpl, err := newEngine(t, only).AddTemplate(both)
		if err != nil {
			t.Fatal(err)
		}
		if tpl.Engine != want {
			t.Errorf("only=%q: engine %s, want %s", only, tpl.Engine, want)
		}
	}
}

func raw(t *testing.T, v any) *apis.RawExtension {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return &apis.RawExtension{Raw: b}
}
