package rego_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
	"github.com/open-policy-agent/opa/v1/ast"
	"sigs.k8s.io/yaml"
)

func newEngine(t testing.TB) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Options{Drivers: []engine.Driver{rego.New()}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

// template builds a template named after kind with top-level rego and libs.
func template(t testing.TB, kind, src string, libs ...string) *apis.ConstraintTemplate {
	t.Helper()
	doc := fmt.Sprintf("apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata:\n  name: %s\nspec:\n  crd:\n    spec:\n      names:\n        kind: %s\n  targets:\n  - target: admission.k8s.gatekeeper.sh\n    rego: |\n%s\n",
		strings.ToLower(kind), kind, indent(src, 6))
	if len(libs) > 0 {
		doc += "    libs:\n"
		for _, l := range libs {
			doc += "    - |\n" + indent(l, 6) + "\n"
		}
	}
	var ct apis.ConstraintTemplate
	if err := yaml.Unmarshal([]byte(doc), &ct); err != nil {
		t.Fatal(err)
	}
	return &ct
}

// location matches "<template>.rego:LINE:COL" (or a lib's file name).
func hasLocation(err error, file string, line int) bool {
	re := regexp.MustCompile(regexp.QuoteMeta(fmt.Sprintf("%s:%d:", file, line)) + `\d+`)
	return re.MatchString(err.Error())
}

func TestDisallowedBuiltins(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct{ kind, call string }{
		{"K8sHTTP", `http.send({"method": "GET", "url": "https://example.com"})`},
		{"K8sDNS", `net.lookup_ip_addr("example.com")`},
		{"K8sRuntime", `opa.runtime()`},
	} {
		t.Run(tc.call, func(t *testing.T) {
			src := fmt.Sprintf("package %s\n\nviolation[{\"msg\": msg}] {\n  x := %s\n  msg := sprintf(\"%%v\", [x])\n}\n", strings.ToLower(tc.kind), tc.call)
			_, err := e.AddTemplate(template(t, tc.kind, src))
			if err == nil {
				t.Fatalf("%s compiled", tc.call)
			}
			name := strings.ToLower(tc.kind)
			fn := strings.SplitN(tc.call, "(", 2)[0]
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) || !strings.Contains(err.Error(), fn) || !hasLocation(err, name+".rego", 4) {
				t.Errorf("error %q: want the template name, %s and %s.rego:4:COL", err, fn, name)
			}
		})
	}
}

func TestDataRefs(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct {
		name, body string
		line       int
	}{
		{"other template", `x := data.k8sother.violation`, 4},
		{"whole data", `x := data`, 4},
		{"builtin-looking root", `x := data.kubernetes.pods`, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "package k8sdata\n\nviolation[{\"msg\": msg}] {\n  " + tc.body + "\n  msg := sprintf(\"%v\", [x])\n}\n"
			_, err := e.AddTemplate(template(t, "K8sData", src))
			if err == nil {
				t.Fatal("compiled")
			}
			if !strings.Contains(err.Error(), `"k8sdata"`) || !strings.Contains(err.Error(), "not allowed") || !hasLocation(err, "k8sdata.rego", tc.line) {
				t.Errorf("error %q: want the template name, 'not allowed' and k8sdata.rego:%d:COL", err, tc.line)
			}
		})
	}
	// data.inventory, data.lib and the template's own package are allowed.
	src := `package k8sdata
import data.lib.x
violation[{"msg": msg}] {
  data.inventory.cluster[_]
  x.ok
  own
  msg := "ok"
}
own { data.k8sdata.helper }
helper { true }
`
	if _, err := e.AddTemplate(template(t, "K8sData", src, "package lib.x\nok { true }\n")); err != nil {
		t.Errorf("allowed refs: %v", err)
	}
}

func TestCompileErrors(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct {
		name, src string
		libs      []string
		file      string
		line      int
		want      string
	}{
		{"parse error", "package k8sbad\n\nviolation[{\"msg\": msg}] {\n  msg := \n}\n", nil, "k8sbad.rego", 5, "rego_parse_error"},
		{"unsafe var", "package k8sbad\n\nviolation[{\"msg\": msg}] {\n  y == 1\n  msg := \"x\"\n}\n", nil, "k8sbad.rego", 4, "unsafe"},
		{"type error", "package k8sbad\n\nviolation[{\"msg\": msg}] {\n  x := 1 + \"a\"\n  msg := \"x\"\n}\n", nil, "k8sbad.rego", 4, "rego_type_error"},
		{"undefined function", "package k8sbad\n\nviolation[{\"msg\": msg}] {\n  x := nosuch(1)\n  msg := \"x\"\n}\n", nil, "k8sbad.rego", 4, "undefined function"},
		{"lib parse error", "package k8sbad\nimport data.lib.l\nviolation[{\"msg\": \"x\"}] { l.f }\n", []string{"package lib.l\n\nf {\n  = 1\n}\n"}, "k8sbad.lib0.rego", 4, "libs[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.AddTemplate(template(t, "K8sBad", tc.src, tc.libs...))
			if err == nil {
				t.Fatal("compiled")
			}
			if !strings.Contains(err.Error(), `template "k8sbad"`) || !strings.Contains(err.Error(), tc.want) || !hasLocation(err, tc.file, tc.line) {
				t.Errorf("error %q: want template \"k8sbad\", %q and %s:%d:COL", err, tc.want, tc.file, tc.line)
			}
		})
	}
	for _, tc := range []struct{ name, src, want string }{
		{"no violation rule", "package k8sbad\nallow { true }\n", "no violation rule"},
		{"empty", "  \n", "neither rego nor code"},
	} {
		if _, err := e.AddTemplate(template(t, "K8sBad", tc.src)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestViolationShape: a violation without a string msg is an evaluation
// error, not a silent pass.
func TestViolationShape(t *testing.T) {
	e := newEngine(t)
	if _, err := e.AddTemplate(template(t, "K8sShape", "package k8sshape\nviolation[{\"message\": \"wrong key\"}] { true }\n")); err != nil {
		t.Fatal(err)
	}
	var c apis.Constraint
	if err := yaml.Unmarshal([]byte("apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sShape\nmetadata: {name: shape}\n"), &c); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AddConstraint(&c); err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "p", "namespace": "n"}}
	resp, err := e.Review(context.Background(), engine.ObjectReview(obj, "CREATE", nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Errors) != 1 || !strings.Contains(resp.Errors[0].Error(), "msg") {
		t.Errorf("errors %v", resp.Errors)
	}
}

func TestReviewDocument(t *testing.T) {
	obj := map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "web", "namespace": "shop"}}
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "shop"}}
	r := engine.ObjectReview(obj, "CREATE", ns)
	r.Source = apis.SourceOriginal
	doc := rego.ReviewDocument(r)
	if doc["operation"] != "CREATE" || doc["name"] != "web" || doc["namespace"] != "shop" {
		t.Errorf("identity: %v", doc)
	}
	if k := doc["kind"].(map[string]any); k["group"] != "apps" || k["version"] != "v1" || k["kind"] != "Deployment" {
		t.Errorf("kind: %v", k)
	}
	if res := doc["resource"].(map[string]any); res["resource"] != "deployments" {
		t.Errorf("resource: %v", res)
	}
	if doc["namespaceObject"] == nil || doc["_unstable"].(map[string]any)["namespace"] == nil {
		t.Errorf("namespace object missing: %v", doc)
	}
	if _, ok := doc["userInfo"].(map[string]any); !ok {
		t.Errorf("userInfo must be an object: %v", doc["userInfo"])
	}
	if _, ok := doc["oldObject"]; ok {
		t.Errorf("CREATE has no oldObject")
	}
	del := rego.ReviewDocument(engine.ObjectReview(obj, "DELETE", nil))
	if _, ok := del["object"]; ok || del["oldObject"] == nil {
		t.Errorf("DELETE: object %v oldObject %v", del["object"], del["oldObject"])
	}
}

// legacy presents a template's top-level rego as the driver receives it.
func legacy(ct *apis.ConstraintTemplate) apis.Code {
	raw, _ := json.Marshal(apis.RegoSource{Rego: ct.Spec.Targets[0].Rego, Libs: ct.Spec.Targets[0].Libs, Version: "v0"})
	return apis.Code{Engine: apis.EngineRego, Source: &apis.RawExtension{Raw: raw}}
}

// TestPrepareReviewNamespace: the prepared review, which converts the
// Namespace once for its two places, is the review document's value.
func TestPrepareReviewNamespace(t *testing.T) {
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "shop", "labels": map[string]any{"team": "a"}}}
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "p", "namespace": "shop"}}
	for _, r := range []*engine.Review{engine.ObjectReview(pod, "CREATE", ns), engine.ObjectReview(pod, "CREATE", nil)} {
		got, err := rego.New().PrepareReview(r)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ast.InterfaceToValue(rego.ReviewDocument(r))
		if err != nil {
			t.Fatal(err)
		}
		if got.(ast.Value).Compare(want) != 0 {
			t.Errorf("prepared review\n%v\nwant\n%v", got, want)
		}
	}
}
