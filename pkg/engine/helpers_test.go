package engine_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
	"sigs.k8s.io/yaml"
)

// newEngine returns an engine with the Rego driver.
func newEngine(t testing.TB) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Options{Drivers: []engine.Driver{rego.New()}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// decode turns a YAML document into v, failing the test on error.
func decode(t testing.TB, doc string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(doc), v); err != nil {
		t.Fatalf("decoding test document: %v\n%s", err, doc)
	}
}

// indent prefixes every line of s with n spaces.
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

// legacyTemplate builds a v1 template with top-level (Rego v0) rego.
func legacyTemplate(t testing.TB, kind, src string, schema string, libs ...string) *apis.ConstraintTemplate {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata:\n  name: %s\nspec:\n  crd:\n    spec:\n      names:\n        kind: %s\n", strings.ToLower(kind), kind)
	if schema != "" {
		fmt.Fprintf(&b, "      validation:\n        openAPIV3Schema:\n%s\n", indent(schema, 10))
	}
	fmt.Fprintf(&b, "  targets:\n  - target: admission.k8s.gatekeeper.sh\n    rego: |\n%s\n", indent(src, 6))
	if len(libs) > 0 {
		b.WriteString("    libs:\n")
		for _, l := range libs {
			fmt.Fprintf(&b, "    - |\n%s\n", indent(l, 6))
		}
	}
	var ct apis.ConstraintTemplate
	decode(t, b.String(), &ct)
	return &ct
}

// codeTemplate builds a template whose Rego is in code[] with a version.
func codeTemplate(t testing.TB, kind, src, version string) *apis.ConstraintTemplate {
	t.Helper()
	doc := fmt.Sprintf(`apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: %s
spec:
  crd:
    spec:
      names:
        kind: %s
  targets:
  - target: admission.k8s.gatekeeper.sh
    code:
    - engine: Rego
      source:
        version: %q
        rego: |
%s
`, strings.ToLower(kind), kind, version, indent(src, 10))
	var ct apis.ConstraintTemplate
	decode(t, doc, &ct)
	return &ct
}

// constraint builds a constraint of kind from a YAML spec.
func constraint(t testing.TB, kind, name, spec string) *apis.Constraint {
	t.Helper()
	doc := fmt.Sprintf("apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: %s\nmetadata:\n  name: %s\n", kind, name)
	if spec != "" {
		doc += "spec:\n" + indent(spec, 2) + "\n"
	}
	var c apis.Constraint
	decode(t, doc, &c)
	return &c
}

func mustAddTemplate(t testing.TB, e *engine.Engine, ct *apis.ConstraintTemplate) {
	t.Helper()
	if _, err := e.AddTemplate(ct); err != nil {
		t.Fatalf("AddTemplate(%s): %v", ct.Name, err)
	}
}

func mustAddConstraint(t testing.TB, e *engine.Engine, c *apis.Constraint) {
	t.Helper()
	if _, err := e.AddConstraint(c); err != nil {
		t.Fatalf("AddConstraint(%s/%s): %v", c.Kind, c.Name, err)
	}
}

// obj parses a YAML object into its JSON form (int64/float64 numbers).
func obj(t testing.TB, doc string) map[string]any {
	t.Helper()
	var m map[string]any
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	return normalize(m).(map[string]any)
}

// normalize gives numbers the loader's int64 form.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
	}
	return v
}

// pod builds a Pod with one container per image.
func pod(ns, name string, labels map[string]string, images ...string) map[string]any {
	meta := map[string]any{"name": name}
	if ns != "" {
		meta["namespace"] = ns
	}
	if len(labels) > 0 {
		l := map[string]any{}
		for k, v := range labels {
			l[k] = v
		}
		meta["labels"] = l
	}
	var cs []any
	for i, img := range images {
		cs = append(cs, map[string]any{"name": fmt.Sprintf("c%d", i), "image": img})
	}
	return map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": map[string]any{"containers": cs}}
}

func namespaceObj(name string, labels map[string]string) map[string]any {
	l := map[string]any{"kubernetes.io/metadata.name": name}
	for k, v := range labels {
		l[k] = v
	}
	return map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name, "labels": l}}
}

// review runs a review of o (CREATE, at the CLI point unless opts say
// otherwise) and fails the test on a review error.
func review(t testing.TB, e *engine.Engine, o map[string]any, nsObj map[string]any, opts ...engine.ReviewOption) *engine.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := e.Review(ctx, engine.ObjectReview(o, "CREATE", nsObj), opts...)
	if err != nil {
		t.Fatalf("Review: %v", err)
	}
	return resp
}

// names lists "Kind/name" of every result, sorted.
func names(rs []engine.Result) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.ConstraintKind+"/"+r.ConstraintName)
	}
	sort.Strings(out)
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// alwaysRego reports one violation naming the object, for every object.
const alwaysRego = `package k8salways

violation[{"msg": msg}] {
  msg := sprintf("always <%v>", [input.review.object.metadata.name])
}
`

// imagesRego denies images whose tag is in parameters.tags.
const imagesRego = `package k8sdisallowedtags

violation[{"msg": msg, "details": {"image": c.image}}] {
  c := input.review.object.spec.containers[_]
  parts := split(c.image, ":")
  count(parts) > 1
  parts[count(parts) - 1] == input.parameters.tags[_]
  msg := sprintf("container <%v> uses a disallowed tag <%v>", [c.name, c.image])
}
`

const tagsSchema = `type: object
properties:
  tags:
    type: array
    items:
      type: string
`
