package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
	"github.com/bouncer-policy/bouncer/pkg/match"
)

func TestNewNeedsDriver(t *testing.T) {
	if _, err := engine.New(engine.Options{}); err == nil {
		t.Fatal("New without drivers: want an error")
	}
}

// TestMatchFields checks every spec.match field through a whole review, so
// that the GroupKind index and the matcher agree.
func TestMatchFields(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sAlways", alwaysRego, ""))
	for _, c := range []struct{ name, spec string }{
		{"no-match", ``},
		{"kinds-pod", "match:\n  kinds:\n  - apiGroups: [\"\"]\n    kinds: [\"Pod\"]"},
		{"kinds-star", "match:\n  kinds:\n  - apiGroups: [\"*\"]\n    kinds: [\"*\"]"},
		{"kinds-empty-lists", "match:\n  kinds:\n  - apiGroups: []\n    kinds: []"},
		{"kinds-star-kind-apps", "match:\n  kinds:\n  - apiGroups: [\"apps\"]\n    kinds: [\"*\"]"},
		{"kinds-deployment", "match:\n  kinds:\n  - apiGroups: [\"apps\"]\n    kinds: [\"Deployment\"]"},
		{"scope-cluster", "match:\n  scope: Cluster"},
		{"scope-namespaced", "match:\n  scope: Namespaced"},
		{"scope-star", "match:\n  scope: \"*\""},
		{"ns-prefix", "match:\n  namespaces: [\"prod-*\"]"},
		{"ns-suffix", "match:\n  namespaces: [\"*-prod\"]"},
		{"ns-exact", "match:\n  namespaces: [\"shop\"]"},
		{"excl-prefix", "match:\n  excludedNamespaces: [\"kube-*\"]"},
		{"excl-suffix", "match:\n  excludedNamespaces: [\"*-system\"]"},
		{"labels", "match:\n  labelSelector:\n    matchLabels: {app: web}"},
		{"labels-expr", "match:\n  labelSelector:\n    matchExpressions:\n    - {key: tier, operator: In, values: [frontend, backend]}"},
		{"nssel", "match:\n  namespaceSelector:\n    matchLabels: {env: prod}"},
		{"name-glob", "match:\n  name: \"web-*\""},
		{"name-exact", "match:\n  name: db"},
	} {
		mustAddConstraint(t, e, constraint(t, "K8sAlways", c.name, c.spec))
	}
	prodNS := namespaceObj("shop", map[string]string{"env": "prod"})
	devNS := namespaceObj("shop", map[string]string{"env": "dev"})
	deploy := map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "web-1", "namespace": "shop"}}
	clusterRole := map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": map[string]any{"name": "web-admin"}}
	always := []string{"K8sAlways/kinds-empty-lists", "K8sAlways/kinds-star", "K8sAlways/no-match", "K8sAlways/scope-star"}
	for _, tc := range []struct {
		name  string
		obj   map[string]any
		ns    map[string]any
		extra []string
	}{
		{"labelled pod in prod namespace", pod("shop", "web-1", map[string]string{"app": "web", "tier": "frontend"}, "nginx"), prodNS,
			[]string{"K8sAlways/kinds-pod", "K8sAlways/scope-namespaced", "K8sAlways/ns-exact", "K8sAlways/excl-prefix", "K8sAlways/excl-suffix", "K8sAlways/labels", "K8sAlways/labels-expr", "K8sAlways/nssel", "K8sAlways/name-glob"}},
		{"unlabelled pod in dev namespace", pod("shop", "db", nil, "nginx"), devNS,
			[]string{"K8sAlways/kinds-pod", "K8sAlways/scope-namespaced", "K8sAlways/ns-exact", "K8sAlways/excl-prefix", "K8sAlways/excl-suffix", "K8sAlways/name-exact"}},
		{"pod in prod-eu", pod("prod-eu", "x", nil, "nginx"), namespaceObj("prod-eu", nil),
			[]string{"K8sAlways/kinds-pod", "K8sAlways/scope-namespaced", "K8sAlways/ns-prefix", "K8sAlways/excl-prefix", "K8sAlways/excl-suffix"}},
		{"pod in eu-prod", pod("eu-prod", "x", nil, "nginx"), namespaceObj("eu-prod", nil),
			[]string{"K8sAlways/kinds-pod", "K8sAlways/scope-namespaced", "K8sAlways/ns-suffix", "K8sAlways/excl-prefix", "K8sAlways/excl-suffix"}},
		{"pod in kube-system", pod("kube-system", "x", nil, "nginx"), namespaceObj("kube-system", nil),
			[]string{"K8sAlways/kinds-pod", "K8sAlways/scope-namespaced"}},
		{"deployment", deploy, prodNS,
			[]string{"K8sAlways/kinds-star-kind-apps", "K8sAlways/kinds-deployment", "K8sAlways/scope-namespaced", "K8sAlways/ns-exact", "K8sAlways/excl-prefix", "K8sAlways/excl-suffix", "K8sAlways/nssel", "K8sAlways/name-glob"}},
		// Cluster-scoped objects are not filtered by namespaces,
		// excludedNamespaces or namespaceSelector.
		{"cluster-scoped object", clusterRole, nil,
			[]string{"K8sAlways/scope-cluster", "K8sAlways/ns-prefix", "K8sAlways/ns-suffix", "K8sAlways/ns-exact", "K8sAlways/excl-prefix", "K8sAlways/excl-suffix", "K8sAlways/nssel", "K8sAlways/name-glob"}},
		// A Namespace is cluster-scoped; namespace criteria and the
		// namespaceSelector apply to its own name and labels.
		{"namespace object prod", namespaceObj("web-prod", map[string]string{"env": "prod"}), nil,
			[]string{"K8sAlways/scope-cluster", "K8sAlways/ns-suffix", "K8sAlways/excl-prefix", "K8sAlways/excl-suffix", "K8sAlways/nssel", "K8sAlways/name-glob"}},
		{"namespace object kube-system", namespaceObj("kube-system", nil), nil,
			[]string{"K8sAlways/scope-cluster"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := review(t, e, tc.obj, tc.ns)
			if len(resp.Errors) > 0 {
				t.Fatalf("errors: %v", resp.Errors)
			}
			want := append(append([]string{}, always...), tc.extra...)
			sortStrings(want)
			if got := names(resp.Results); !equal(got, want) {
				t.Errorf("matched\n got %v\nwant %v", got, want)
			}
		})
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestNamespaceSelectorUnknownNamespace: a namespaced object whose
// Namespace is not supplied cannot be matched by a namespaceSelector; the
// review reports an error rather than guessing.
func TestNamespaceSelectorUnknownNamespace(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sAlways", alwaysRego, ""))
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "nssel", "match:\n  namespaceSelector:\n    matchLabels: {env: prod}"))
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "plain", ""))
	resp := review(t, e, pod("shop", "web", nil, "nginx"), nil)
	if len(resp.Errors) != 1 {
		t.Fatalf("want one error, got %v", resp.Errors)
	}
	ee := resp.Errors[0]
	if ee.ConstraintKind != "K8sAlways" || ee.ConstraintName != "nssel" {
		t.Errorf("error names %s/%s, want K8sAlways/nssel", ee.ConstraintKind, ee.ConstraintName)
	}
	if !errors.Is(ee, match.ErrNamespaceUnknown) || !strings.Contains(ee.Error(), `"shop"`) {
		t.Errorf("error %q: want ErrNamespaceUnknown naming the namespace", ee)
	}
	if got := names(resp.Results); !equal(got, []string{"K8sAlways/plain"}) {
		t.Errorf("results %v: the other constraint must still be evaluated", got)
	}
}

func TestMatchSource(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sAlways", alwaysRego, ""))
	podKinds := "  kinds:\n  - apiGroups: [\"\"]\n    kinds: [\"Pod\"]\n"
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "all", "match:\n"+podKinds+"  source: All"))
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "default", "match:\n"+podKinds))
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "original", "match:\n"+podKinds+"  source: Original"))
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "generated", "match:\n"+podKinds+"  source: Generated"))
	if err := e.AddExpansion(deploymentExpansion(t, "")); err != nil {
		t.Fatal(err)
	}
	resp := review(t, e, pod("shop", "web", nil, "nginx"), nil)
	if got, want := names(resp.Results), []string{"K8sAlways/all", "K8sAlways/default", "K8sAlways/original"}; !equal(got, want) {
		t.Errorf("submitted Pod: got %v, want %v", got, want)
	}
	resp = review(t, e, deployment(t, "shop", "web", "nginx:1"), nil)
	if got, want := names(resp.Results), []string{"K8sAlways/all", "K8sAlways/default", "K8sAlways/generated"}; !equal(got, want) {
		t.Errorf("Pod generated from a Deployment: got %v, want %v", got, want)
	}
	for _, r := range resp.Results {
		if r.ExpansionTemplate != "expand-deployments" {
			t.Errorf("%s: ExpansionTemplate %q", r.ConstraintName, r.ExpansionTemplate)
		}
	}
}

func TestMatchInvalid(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sAlways", alwaysRego, ""))
	for _, tc := range []struct{ spec, field string }{
		{"match:\n  scope: Everywhere", "spec.match.scope"},
		{"match:\n  source: Elsewhere", "spec.match.source"},
		{"match:\n  namespaces: [\"a*b\"]", "spec.match.namespaces[0]"},
		{"match:\n  excludedNamespaces: [\"ok\", \"a*b*\"]", "spec.match.excludedNamespaces[1]"},
		{"match:\n  name: \"x*y\"", "spec.match.name"},
		{"match:\n  labelSelector:\n    matchExpressions:\n    - {key: a, operator: Bogus}", "spec.match.labelSelector"},
		{"match:\n  namespaceSelector:\n    matchExpressions:\n    - {key: a, operator: In}", "spec.match.namespaceSelector"},
	} {
		_, err := e.AddConstraint(constraint(t, "K8sAlways", "bad", tc.spec))
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "K8sAlways/bad") {
			t.Errorf("%s: error %v, want one naming %s and the constraint", tc.spec, err, tc.field)
		}
	}
}

func TestEnforcementActions(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sAlways", alwaysRego, ""))
	for _, c := range []struct{ name, spec string }{
		{"default", ""},
		{"deny", "enforcementAction: deny"},
		{"dryrun", "enforcementAction: dryrun"},
		{"warn", "enforcementAction: warn"},
		{"upper", "enforcementAction: Warn"},
		{"scoped-webhook-deny-audit-warn", `enforcementAction: scoped
scopedEnforcementActions:
- action: deny
  enforcementPoints: [{name: validation.gatekeeper.sh}]
- action: warn
  enforcementPoints: [{name: audit.gatekeeper.sh}]`},
		{"scoped-star-warn", `enforcementAction: scoped
scopedEnforcementActions:
- action: warn
  enforcementPoints: [{name: "*"}]`},
		{"scoped-star-dryrun-cli-deny", `enforcementAction: scoped
scopedEnforcementActions:
- action: dryrun
  enforcementPoints: [{name: "*"}]
- action: deny
  enforcementPoints: [{name: gator.gatekeeper.sh}]`},
	} {
		mustAddConstraint(t, e, constraint(t, "K8sAlways", c.name, c.spec))
	}
	type want struct {
		action string
		scoped []string
	}
	for _, tc := range []struct {
		point string
		want  map[string]want
	}{
		{apis.PointCLI, map[string]want{
			"default": {"deny", nil}, "deny": {"deny", nil}, "dryrun": {"dryrun", nil}, "warn": {"warn", nil}, "upper": {"warn", nil},
			// scoped-webhook-deny-audit-warn does not apply at the CLI.
			"scoped-star-warn":            {"warn", []string{"warn"}},
			"scoped-star-dryrun-cli-deny": {"deny", []string{"dryrun", "deny"}},
		}},
		{apis.PointWebhook, map[string]want{
			"default": {"deny", nil}, "deny": {"deny", nil}, "dryrun": {"dryrun", nil}, "warn": {"warn", nil}, "upper": {"warn", nil},
			"scoped-webhook-deny-audit-warn": {"deny", []string{"deny"}},
			"scoped-star-warn":               {"warn", []string{"warn"}},
			"scoped-star-dryrun-cli-deny":    {"dryrun", []string{"dryrun"}},
		}},
		{apis.PointAudit, map[string]want{
			"default": {"deny", nil}, "deny": {"deny", nil}, "dryrun": {"dryrun", nil}, "warn": {"warn", nil}, "upper": {"warn", nil},
			"scoped-webhook-deny-audit-warn": {"warn", []string{"warn"}},
			"scoped-star-warn":               {"warn", []string{"warn"}},
			"scoped-star-dryrun-cli-deny":    {"dryrun", []string{"dryrun"}},
		}},
	} {
		t.Run(tc.point, func(t *testing.T) {
			resp := review(t, e, pod("shop", "web", nil, "nginx"), nil, engine.AtEnforcementPoint(tc.point))
			got := map[string]want{}
			for _, r := range resp.Results {
				got[r.ConstraintName] = want{r.EnforcementAction, r.ScopedActions}
			}
			if len(got) != len(tc.want) {
				t.Errorf("got %d results %v, want %d", len(got), got, len(tc.want))
			}
			for name, w := range tc.want {
				g, ok := got[name]
				if !ok {
					t.Errorf("%s: no result", name)
					continue
				}
				if g.action != w.action || !equal(g.scoped, w.scoped) {
					t.Errorf("%s: got %s %v, want %s %v", name, g.action, g.scoped, w.action, w.scoped)
				}
			}
			if !resp.Denied() {
				t.Error("Denied() = false, want true (deny constraints matched)")
			}
		})
	}
}

func TestDeniedOnlyForDeny(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sAlways", alwaysRego, ""))
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "warn", "enforcementAction: warn"))
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "dryrun", "enforcementAction: dryrun"))
	resp := review(t, e, pod("shop", "web", nil, "nginx"), nil)
	if len(resp.Results) != 2 || resp.Denied() {
		t.Errorf("warn + dryrun: %d results, Denied()=%v; want 2 results, not denied", len(resp.Results), resp.Denied())
	}
}

func TestEnforcementActionInvalid(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sAlways", alwaysRego, ""))
	for _, tc := range []struct{ spec, want string }{
		{"enforcementAction: block", "spec.enforcementAction"},
		{"enforcementAction: scoped", "scopedEnforcementActions is empty"},
		{"enforcementAction: scoped\nscopedEnforcementActions:\n- action: explode\n  enforcementPoints: [{name: \"*\"}]", "spec.scopedEnforcementActions[0].action"},
		{"enforcementAction: scoped\nscopedEnforcementActions:\n- action: warn", "spec.scopedEnforcementActions[0].enforcementPoints"},
	} {
		_, err := e.AddConstraint(constraint(t, "K8sAlways", "bad", tc.spec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.spec, err, tc.want)
		}
	}
}

func TestRegoVersions(t *testing.T) {
	v1 := `package k8sv1

violation contains {"msg": msg} if {
  some c in input.review.object.spec.containers
  endswith(c.image, ":latest")
  msg := sprintf("v1 says no to <%v>", [c.image])
}
`
	e := newEngine(t)
	mustAddTemplate(t, e, codeTemplate(t, "K8sV1", v1, "v1"))
	mustAddConstraint(t, e, constraint(t, "K8sV1", "v1", ""))
	resp := review(t, e, pod("shop", "web", nil, "nginx:latest", "redis:7"), nil)
	if len(resp.Results) != 1 || resp.Results[0].Message != "v1 says no to <nginx:latest>" {
		t.Fatalf("v1 results %+v", resp.Results)
	}

	// The same v1 source declared as v0 does not parse.
	if _, err := e.AddTemplate(codeTemplate(t, "K8sV1b", v1, "v0")); err == nil {
		t.Error("v1 syntax with source.version v0: want a parse error")
	}
	// v0 syntax in a v1 template does not parse either (v1 needs if/contains).
	v0 := strings.Replace(alwaysRego, "k8salways", "k8sv0", 1)
	if _, err := e.AddTemplate(codeTemplate(t, "K8sV0", v0, "v1")); err == nil {
		t.Error("v0 syntax with source.version v1: want a parse error")
	}
	if _, err := e.AddTemplate(codeTemplate(t, "K8sV0", v0, "v0")); err != nil {
		t.Errorf("v0 code[]: %v", err)
	}
	if _, err := e.AddTemplate(codeTemplate(t, "K8sV2", v0, "v2")); err == nil || !strings.Contains(err.Error(), "source.version") {
		t.Errorf("version v2: error %v, want one naming source.version", err)
	}
}

// TestLegacyRegoWinsOverCode: a template with both top-level rego and
// code[] Rego runs the top-level rego, as Gatekeeper does.
func TestLegacyRegoWinsOverCode(t *testing.T) {
	doc := `apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sboth
spec:
  crd:
    spec:
      names:
        kind: K8sBoth
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package k8sboth
      violation[{"msg": "from legacy rego"}] { true }
    code:
    - engine: Rego
      source:
        version: v1
        rego: |
          package k8sboth
          violation contains {"msg": "from code"} if { true }
`
	var ct apis.ConstraintTemplate
	decode(t, doc, &ct)
	e := newEngine(t)
	tm, err := e.AddTemplate(&ct)
	if err != nil {
		t.Fatal(err)
	}
	if tm.Engine != apis.EngineRego {
		t.Errorf("engine %q", tm.Engine)
	}
	mustAddConstraint(t, e, constraint(t, "K8sBoth", "both", ""))
	resp := review(t, e, pod("shop", "web", nil, "nginx"), nil)
	if len(resp.Results) != 1 || resp.Results[0].Message != "from legacy rego" {
		t.Errorf("results %+v, want only the legacy rego's", resp.Results)
	}
}

func TestLibs(t *testing.T) {
	src := `package k8slibs
import data.lib.helpers
violation[{"msg": msg}] {
  c := input.review.object.spec.containers[_]
  helpers.untagged(c.image)
  msg := sprintf("untagged <%v>", [c.image])
}
`
	lib := `package lib.helpers
untagged(img) { not contains(img, ":") }
`
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sLibs", src, "", lib))
	mustAddConstraint(t, e, constraint(t, "K8sLibs", "libs", ""))
	resp := review(t, e, pod("shop", "web", nil, "nginx", "redis:7"), nil)
	if len(resp.Results) != 1 || resp.Results[0].Message != "untagged <nginx>" {
		t.Errorf("results %+v", resp.Results)
	}

	bad := "package helpers\nuntagged(img) { true }\n"
	_, err := e.AddTemplate(legacyTemplate(t, "K8sBadLib", strings.Replace(src, "k8slibs", "k8sbadlib", 1), "", bad))
	if err == nil || !strings.Contains(err.Error(), "libs[0]") || !strings.Contains(err.Error(), "data.lib") {
		t.Errorf("lib outside data.lib: error %v", err)
	}
}

// inventoryRego flags a Pod whose name is used by another Pod of the same
// namespace in the inventory, and any Pod when a cluster-scoped
// ConfigMap-like marker exists.
const inventoryRego = `package k8sinventory

violation[{"msg": msg}] {
  other := data.inventory.namespace[input.review.object.metadata.namespace]["v1"]["Pod"][name]
  name == input.review.object.metadata.name
  other.metadata.uid != input.review.object.metadata.uid
  msg := sprintf("namespaced: pod <%v> already exists", [name])
}

violation[{"msg": msg}] {
  m := data.inventory.cluster["bouncer.dev/v1"]["Freeze"][name]
  msg := sprintf("cluster: frozen by <%v>", [name])
}
`

func TestInventory(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sInventory", inventoryRego, ""))
	mustAddConstraint(t, e, constraint(t, "K8sInventory", "inv", ""))
	if !e.UsesInventory() {
		t.Fatal("UsesInventory() = false")
	}
	existing := pod("shop", "web", nil, "nginx")
	existing["metadata"].(map[string]any)["uid"] = "old"
	freeze := map[string]any{"apiVersion": "bouncer.dev/v1", "kind": "Freeze", "metadata": map[string]any{"name": "holidays"}}
	incoming := pod("shop", "web", nil, "nginx")
	incoming["metadata"].(map[string]any)["uid"] = "new"

	msgs := func() []string {
		resp := review(t, e, incoming, nil)
		if len(resp.Errors) > 0 {
			t.Fatal(resp.Errors)
		}
		var out []string
		for _, r := range resp.Results {
			out = append(out, r.Message)
		}
		sortStrings(out)
		return out
	}
	if got := msgs(); len(got) != 0 {
		t.Fatalf("empty inventory: %v", got)
	}
	if err := e.SetInventory(ctx, []map[string]any{existing, freeze}); err != nil {
		t.Fatal(err)
	}
	if got, want := msgs(), []string{"cluster: frozen by <holidays>", "namespaced: pod <web> already exists"}; !equal(got, want) {
		t.Errorf("after SetInventory: %v, want %v", got, want)
	}
	if err := e.DeleteInventory(ctx, freeze); err != nil {
		t.Fatal(err)
	}
	if got, want := msgs(), []string{"namespaced: pod <web> already exists"}; !equal(got, want) {
		t.Errorf("after DeleteInventory(freeze): %v, want %v", got, want)
	}
	// Deleting what is not there is not an error.
	if err := e.DeleteInventory(ctx, freeze); err != nil {
		t.Errorf("second DeleteInventory: %v", err)
	}
	if err := e.DeleteInventory(ctx, existing); err != nil {
		t.Fatal(err)
	}
	if got := msgs(); len(got) != 0 {
		t.Errorf("after DeleteInventory(pod): %v", got)
	}
	if err := e.PutInventory(ctx, freeze); err != nil {
		t.Fatal(err)
	}
	if got, want := msgs(), []string{"cluster: frozen by <holidays>"}; !equal(got, want) {
		t.Errorf("after PutInventory(freeze): %v, want %v", got, want)
	}
	// PutInventory into a namespace that has no entry yet creates it.
	other := pod("shop", "web", nil, "nginx")
	other["metadata"].(map[string]any)["uid"] = "other"
	if err := e.PutInventory(ctx, other); err != nil {
		t.Fatal(err)
	}
	if got, want := msgs(), []string{"cluster: frozen by <holidays>", "namespaced: pod <web> already exists"}; !equal(got, want) {
		t.Errorf("after PutInventory(pod): %v, want %v", got, want)
	}
	// SetInventory replaces everything.
	if err := e.SetInventory(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := msgs(); len(got) != 0 {
		t.Errorf("after SetInventory(nil): %v", got)
	}
	if err := e.PutInventory(ctx, map[string]any{"kind": "Pod"}); err == nil {
		t.Error("PutInventory of an object without apiVersion/name: want an error")
	}
}

func TestInventoryPath(t *testing.T) {
	p, err := engine.InventoryPath(pod("shop", "web", nil))
	if err != nil || strings.Join(p, "/") != "namespace/shop/v1/Pod/web" {
		t.Errorf("namespaced: %v %v", p, err)
	}
	p, err = engine.InventoryPath(namespaceObj("shop", nil))
	if err != nil || strings.Join(p, "/") != "cluster/v1/Namespace/shop" {
		t.Errorf("cluster: %v %v", p, err)
	}
	root, err := engine.BuildInventory([]map[string]any{pod("shop", "web", nil), namespaceObj("shop", nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := root["namespace"].(map[string]any)["shop"].(map[string]any)["v1"].(map[string]any)["Pod"].(map[string]any)["web"]; !ok {
		t.Errorf("BuildInventory: pod missing: %v", root)
	}
	if _, ok := root["cluster"].(map[string]any)["v1"].(map[string]any)["Namespace"].(map[string]any)["shop"]; !ok {
		t.Errorf("BuildInventory: namespace missing: %v", root)
	}
}

func deploymentExpansion(t testing.TB, action string) *apis.ExpansionTemplate {
	doc := `apiVersion: expansion.gatekeeper.sh/v1beta1
kind: ExpansionTemplate
metadata:
  name: expand-deployments
spec:
  applyTo:
  - groups: ["apps"]
    kinds: ["Deployment"]
    versions: ["v1"]
  templateSource: spec.template
  generatedGVK: {kind: Pod, group: "", version: v1}
`
	if action != "" {
		doc += "  enforcementAction: " + action + "\n"
	}
	var x apis.ExpansionTemplate
	decode(t, doc, &x)
	return &x
}

func deployment(t testing.TB, ns, name, image string) map[string]any {
	return obj(t, `apiVersion: apps/v1
kind: Deployment
metadata:
  name: `+name+`
  namespace: `+ns+`
spec:
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: `+image+`
`)
}

func TestExpansion(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sDisallowedTags", imagesRego, tagsSchema))
	mustAddConstraint(t, e, constraint(t, "K8sDisallowedTags", "no-latest", "match:\n  kinds:\n  - apiGroups: [\"\"]\n    kinds: [\"Pod\"]\nparameters:\n  tags: [latest]"))
	mustAddConstraint(t, e, constraint(t, "K8sDisallowedTags", "no-latest-original", "match:\n  source: Original\n  kinds:\n  - apiGroups: [\"\"]\n    kinds: [\"Pod\"]\nparameters:\n  tags: [latest]"))

	// Without an expansion template, a Deployment matches no Pod constraint.
	if resp := review(t, e, deployment(t, "shop", "web", "nginx:latest"), nil); len(resp.Results) != 0 {
		t.Fatalf("no expansion: %+v", resp.Results)
	}
	if err := e.AddExpansion(deploymentExpansion(t, "")); err != nil {
		t.Fatal(err)
	}
	resp := review(t, e, deployment(t, "shop", "web", "nginx:latest"), nil)
	if len(resp.Results) != 1 {
		t.Fatalf("with expansion: %+v (source: Original must exclude the generated Pod)", resp.Results)
	}
	r := resp.Results[0]
	if r.ConstraintName != "no-latest" || r.Message != "[Implied by expand-deployments] container <main> uses a disallowed tag <nginx:latest>" ||
		r.EnforcementAction != "deny" || r.ExpansionTemplate != "expand-deployments" {
		t.Errorf("result %+v", r)
	}
	if resp := review(t, e, deployment(t, "shop", "web", "nginx:1.27"), nil); len(resp.Results) != 0 {
		t.Errorf("compliant deployment: %+v", resp.Results)
	}

	// The expansion's enforcementAction replaces the constraint's.
	if err := e.AddExpansion(deploymentExpansion(t, "warn")); err != nil {
		t.Fatal(err)
	}
	resp = review(t, e, deployment(t, "shop", "web", "nginx:latest"), nil)
	if len(resp.Results) != 1 || resp.Results[0].EnforcementAction != "warn" || resp.Denied() {
		t.Errorf("override warn: %+v", resp.Results)
	}
	if !e.RemoveExpansion("expand-deployments") || e.RemoveExpansion("expand-deployments") {
		t.Error("RemoveExpansion: want true then false")
	}
	if resp := review(t, e, deployment(t, "shop", "web", "nginx:latest"), nil); len(resp.Results) != 0 {
		t.Errorf("after RemoveExpansion: %+v", resp.Results)
	}
}

func TestExpansionCronJob(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sDisallowedTags", imagesRego, tagsSchema))
	mustAddConstraint(t, e, constraint(t, "K8sDisallowedTags", "no-latest", "match:\n  kinds:\n  - apiGroups: [\"\"]\n    kinds: [\"Pod\"]\nparameters:\n  tags: [latest]"))
	mustAddConstraint(t, e, constraint(t, "K8sDisallowedTags", "jobs", "match:\n  kinds:\n  - apiGroups: [\"batch\"]\n    kinds: [\"Job\"]\nparameters:\n  tags: [latest]"))
	for _, doc := range []string{`apiVersion: expansion.gatekeeper.sh/v1beta1
kind: ExpansionTemplate
metadata: {name: expand-cronjobs}
spec:
  applyTo: [{groups: [batch], kinds: [CronJob], versions: [v1]}]
  templateSource: spec.jobTemplate
  generatedGVK: {kind: Job, group: batch, version: v1}
`, `apiVersion: expansion.gatekeeper.sh/v1beta1
kind: ExpansionTemplate
metadata: {name: expand-jobs}
spec:
  applyTo: [{groups: [batch], kinds: [Job], versions: [v1]}]
  templateSource: spec.template
  generatedGVK: {kind: Pod, group: "", version: v1}
`} {
		var x apis.ExpansionTemplate
		decode(t, doc, &x)
		if err := e.AddExpansion(&x); err != nil {
			t.Fatal(err)
		}
	}
	cron := obj(t, `apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: ops}
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - {name: backup, image: "backup:latest"}
`)
	resp := review(t, e, cron, nil)
	// The Job's spec has no containers, so only the Pod (two levels down)
	// violates; its message carries both expansion names.
	if len(resp.Results) != 1 {
		t.Fatalf("results %+v", resp.Results)
	}
	want := "[Implied by expand-cronjobs] [Implied by expand-jobs] container <backup> uses a disallowed tag <backup:latest>"
	if resp.Results[0].Message != want {
		t.Errorf("message %q, want %q", resp.Results[0].Message, want)
	}
	if resp.Evaluated != 2 {
		t.Errorf("Evaluated %d, want 2 (the Job and the Pod)", resp.Evaluated)
	}
}

func TestExpansionInvalid(t *testing.T) {
	e := newEngine(t)
	for _, tc := range []struct{ doc, want string }{
		{"metadata: {name: x}\nspec: {applyTo: [{kinds: [Deployment]}], generatedGVK: {kind: Pod, version: v1}}", "templateSource"},
		{"metadata: {name: x}\nspec: {applyTo: [{kinds: [Deployment]}], templateSource: spec.template}", "generatedGVK"},
		{"metadata: {name: x}\nspec: {templateSource: spec.template, generatedGVK: {kind: Pod, version: v1}}", "applyTo"},
		{"metadata: {name: x}\nspec: {applyTo: [{kinds: [Pod]}], templateSource: spec.template, generatedGVK: {kind: Pod, version: v1}}", "expand forever"},
		{"metadata: {name: x}\nspec: {applyTo: [{kinds: [Deployment]}], templateSource: spec.template, generatedGVK: {kind: Pod, version: v1}, enforcementAction: block}", "enforcementAction"},
	} {
		var x apis.ExpansionTemplate
		decode(t, tc.doc, &x)
		if err := e.AddExpansion(&x); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestTemplateLifecycle(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sDisallowedTags", imagesRego, tagsSchema))
	mustAddConstraint(t, e, constraint(t, "K8sDisallowedTags", "no-latest", "parameters:\n  tags: [latest]"))
	p := pod("shop", "web", nil, "nginx:latest", "redis:edge")
	if got := len(review(t, e, p, nil).Results); got != 1 {
		t.Fatalf("initial: %d results", got)
	}

	// Replacing the constraint changes its parameters.
	mustAddConstraint(t, e, constraint(t, "K8sDisallowedTags", "no-latest", "parameters:\n  tags: [latest, edge]"))
	if got := len(review(t, e, p, nil).Results); got != 2 {
		t.Errorf("after replacing the constraint: %d results, want 2", got)
	}
	if n := len(e.Constraints()); n != 1 {
		t.Errorf("Constraints(): %d, want 1", n)
	}

	// Replacing the template's Rego changes the message; the constraint is kept.
	mustAddTemplate(t, e, legacyTemplate(t, "K8sDisallowedTags", strings.Replace(imagesRego, "uses a disallowed tag", "REPLACED", 1), tagsSchema))
	resp := review(t, e, p, nil)
	if len(resp.Results) != 2 || !strings.Contains(resp.Results[0].Message, "REPLACED") {
		t.Errorf("after replacing the template: %+v", resp.Results)
	}

	// A schema change that the constraint no longer satisfies drops it and
	// says so, naming the field.
	strictSchema := `type: object
properties:
  tags:
    type: array
    maxItems: 1
    items:
      type: string
`
	_, err := e.AddTemplate(legacyTemplate(t, "K8sDisallowedTags", imagesRego, strictSchema))
	if err == nil || !strings.Contains(err.Error(), "K8sDisallowedTags/no-latest") || !strings.Contains(err.Error(), "spec.parameters.tags") {
		t.Errorf("schema change: error %v, want it to name the constraint and spec.parameters.tags", err)
	}
	if n := len(e.Constraints()); n != 0 {
		t.Errorf("constraint not re-validated: %d constraints remain", n)
	}
	if n := len(e.Templates()); n != 1 {
		t.Errorf("template must still be added: %d templates", n)
	}

	// A constraint that fits the new schema is accepted.
	mustAddConstraint(t, e, constraint(t, "K8sDisallowedTags", "no-latest", "parameters:\n  tags: [latest]"))
	if !e.RemoveConstraint("K8sDisallowedTags", "no-latest") || e.RemoveConstraint("K8sDisallowedTags", "no-latest") {
		t.Error("RemoveConstraint: want true then false")
	}
	if got := len(review(t, e, p, nil).Results); got != 0 {
		t.Errorf("after RemoveConstraint: %d results", got)
	}

	// Removing the template removes its constraints.
	mustAddConstraint(t, e, constraint(t, "K8sDisallowedTags", "again", "parameters:\n  tags: [latest]"))
	if !e.RemoveTemplate("k8sdisallowedtags") || e.RemoveTemplate("k8sdisallowedtags") {
		t.Error("RemoveTemplate: want true then false")
	}
	if len(e.Constraints()) != 0 || len(e.Templates()) != 0 {
		t.Errorf("after RemoveTemplate: %d constraints, %d templates", len(e.Constraints()), len(e.Templates()))
	}
	_, err = e.AddConstraint(constraint(t, "K8sDisallowedTags", "orphan", ""))
	if err == nil || !strings.Contains(err.Error(), "K8sDisallowedTags/orphan") || !strings.Contains(err.Error(), "k8sdisallowedtags") {
		t.Errorf("constraint without template: error %v, want it to name the constraint and the template", err)
	}
}

func TestTemplateKindConflicts(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sAlways", alwaysRego, ""))
	ct := legacyTemplate(t, "K8sAlways", alwaysRego, "")
	ct.Spec.CRD.Spec.Names.Kind = "K8sOther"
	if _, err := e.AddTemplate(ct); err == nil || !strings.Contains(err.Error(), "metadata.name") {
		t.Errorf("name/kind mismatch: %v", err)
	}
	for _, tc := range []struct {
		mutate func(*apis.ConstraintTemplate)
		want   string
	}{
		{func(c *apis.ConstraintTemplate) { c.Name = "" }, "metadata.name"},
		{func(c *apis.ConstraintTemplate) { c.Spec.CRD.Spec.Names.Kind = "" }, "spec.crd.spec.names.kind"},
		{func(c *apis.ConstraintTemplate) { c.Spec.Targets = nil }, "spec.targets"},
		{func(c *apis.ConstraintTemplate) { c.Spec.Targets[0].Target = "other" }, "spec.targets[0].target"},
		{func(c *apis.ConstraintTemplate) { c.Spec.Targets[0].Rego = "" }, "neither rego nor code"},
	} {
		ct := legacyTemplate(t, "K8sAlways", alwaysRego, "")
		tc.mutate(ct)
		if _, err := e.AddTemplate(ct); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

func TestParametersSchema(t *testing.T) {
	e := newEngine(t)
	schema := `type: object
properties:
  tags:
    type: array
    items:
      type: string
  limit:
    type: integer
    default: 3
`
	mustAddTemplate(t, e, legacyTemplate(t, "K8sDisallowedTags", imagesRego, schema))
	_, err := e.AddConstraint(constraint(t, "K8sDisallowedTags", "bad", "parameters:\n  tags: latest"))
	if err == nil || !strings.Contains(err.Error(), "spec.parameters.tags") || !strings.Contains(err.Error(), "K8sDisallowedTags/bad") || !strings.Contains(err.Error(), "k8sdisallowedtags") {
		t.Errorf("parameters breaking the schema: error %v, want it to name the field, constraint and template", err)
	}
	_, err = e.AddConstraint(constraint(t, "K8sDisallowedTags", "bad", "parameters:\n  limit: many"))
	if err == nil || !strings.Contains(err.Error(), "spec.parameters.limit") {
		t.Errorf("limit: error %v", err)
	}
	// Fields the schema does not declare are refused, as kubectl apply's
	// default (--validate=strict) refuses them, not pruned silently.
	_, err = e.AddConstraint(constraint(t, "K8sDisallowedTags", "typo", "parameters:\n  tags: [latest]\n  limt: 2"))
	if err == nil || !strings.Contains(err.Error(), `unknown field "spec.parameters.limt"`) {
		t.Errorf("unknown field: error %v", err)
	}
	c, err := e.AddConstraint(constraint(t, "K8sDisallowedTags", "good", "parameters:\n  tags: [latest]"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Params["limit"] != int64(3) {
		t.Errorf("default not applied: %v", c.Params)
	}
	if err := e.CheckConstraint(constraint(t, "K8sDisallowedTags", "x", "parameters:\n  tags: 1")); err == nil {
		t.Error("CheckConstraint: want an error")
	}
	if _, err := e.AddConstraint(&apis.Constraint{}); err == nil {
		t.Error("constraint without name: want an error")
	}
	wrongGroup := constraint(t, "K8sDisallowedTags", "x", "")
	wrongGroup.APIVersion = "example.com/v1"
	if _, err := e.AddConstraint(wrongGroup); err == nil || !strings.Contains(err.Error(), "constraints.gatekeeper.sh") {
		t.Errorf("wrong group: %v", err)
	}
}

// TestReviewDeadline: a rule that loops for long is cut off at the review
// deadline and reported as an evaluation error, not a hang.
func TestReviewDeadline(t *testing.T) {
	src := `package k8sslow
violation[{"msg": msg}] {
  n := count([x | x := numbers.range(1, 100000000)[_]; x % 7 == 0])
  n > 0
  msg := "slow"
}
`
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sSlow", src, ""))
	mustAddConstraint(t, e, constraint(t, "K8sSlow", "slow", ""))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	resp, err := e.Review(ctx, engine.ObjectReview(pod("shop", "web", nil, "nginx"), "CREATE", nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 0 || len(resp.Errors) != 1 {
		t.Fatalf("results %v errors %v, want one error", resp.Results, resp.Errors)
	}
	if msg := resp.Errors[0].Error(); !strings.Contains(msg, "deadline") || !strings.Contains(msg, "K8sSlow/slow") {
		t.Errorf("error %q: want it to name the constraint and the deadline", msg)
	}
	if ctx.Err() == nil {
		t.Error("the review returned before its deadline, so the rule did not loop")
	}
}

// TestReviewTimeoutOption: without a caller deadline, Options.ReviewTimeout
// bounds the review.
func TestReviewTimeoutOption(t *testing.T) {
	src := `package k8sslow
violation[{"msg": "slow"}] {
  count([x | x := numbers.range(1, 100000000)[_]]) > 0
}
`
	e, err := engine.New(engine.Options{Drivers: []engine.Driver{rego.New()}, ReviewTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mustAddTemplate(t, e, legacyTemplate(t, "K8sSlow", src, ""))
	mustAddConstraint(t, e, constraint(t, "K8sSlow", "slow", ""))
	resp, err := e.Review(context.Background(), engine.ObjectReview(pod("shop", "web", nil, "nginx"), "CREATE", nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Errors) != 1 || !strings.Contains(resp.Errors[0].Error(), "deadline") {
		t.Errorf("errors %v, want one mentioning the deadline", resp.Errors)
	}
}

// TestReviewFromRequestFillsFromObject: a hand-written request without
// kind, name and namespace takes them from its object (oldObject on
// DELETE); one that gives them keeps its own.
func TestReviewFromRequestFillsFromObject(t *testing.T) {
	pod := func(ns string) map[string]any {
		return map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "web", "namespace": ns}}
	}
	r, err := engine.ReviewFromRequest(map[string]any{"operation": "UPDATE", "object": pod("prod"), "oldObject": pod("prod")})
	if err != nil {
		t.Fatal(err)
	}
	want := engine.GVK{Group: "apps", Version: "v1", Kind: "Deployment"}
	if r.Kind != want || r.Name != "web" || r.Namespace != "prod" || r.Resource.Resource != "deployments" {
		t.Errorf("filled review %+v", r)
	}
	r, err = engine.ReviewFromRequest(map[string]any{"operation": "DELETE", "oldObject": pod("dev")})
	if err != nil || r.Kind != want || r.Namespace != "dev" {
		t.Errorf("DELETE: %+v, %v", r, err)
	}
	r, err = engine.ReviewFromRequest(map[string]any{
		"kind": map[string]any{"group": "apps", "version": "v1beta1", "kind": "Deployment"}, "namespace": "given", "name": "given",
		"object": pod("prod"),
	})
	if err != nil || r.Kind.Version != "v1beta1" || r.Namespace != "given" || r.Name != "given" {
		t.Errorf("given fields must win: %+v, %v", r, err)
	}
	for _, bad := range []map[string]any{
		{"operation": "UPDATE"},
		{"object": map[string]any{"metadata": map[string]any{"name": "x"}}},
		{"kind": "Pod", "object": pod("prod")},
	} {
		if r, err := engine.ReviewFromRequest(bad); err == nil {
			t.Errorf("accepted %v: %+v", bad, r)
		}
	}
}

func TestConcerns(t *testing.T) {
	e := newEngine(t)
	pod, cm := engine.GVK{Version: "v1", Kind: "Pod"}, engine.GVK{Version: "v1", Kind: "ConfigMap"}
	deploy := engine.GVK{Group: "apps", Version: "v1", Kind: "Deployment"}
	if e.Concerns(pod) {
		t.Error("an empty engine concerns Pods")
	}
	mustAddTemplate(t, e, legacyTemplate(t, "K8sAlways", alwaysRego, ""))
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "pods", "match:\n  kinds:\n  - apiGroups: [\"\"]\n    kinds: [\"Pod\"]\n"))
	if !e.Concerns(pod) || e.Concerns(cm) || e.Concerns(deploy) {
		t.Errorf("a Pod constraint: Pod %v, ConfigMap %v, Deployment %v; want only Pod", e.Concerns(pod), e.Concerns(cm), e.Concerns(deploy))
	}
	// A Deployment expands into a Pod the constraint judges.
	if err := e.AddExpansion(deploymentExpansion(t, "")); err != nil {
		t.Fatal(err)
	}
	if !e.Concerns(deploy) || e.Concerns(cm) {
		t.Errorf("with the Deployment expansion: Deployment %v, ConfigMap %v; want Deployment only", e.Concerns(deploy), e.Concerns(cm))
	}
	// A constraint without kinds matches every kind.
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "everything", ""))
	if !e.Concerns(cm) {
		t.Error("a constraint that matches every kind does not concern ConfigMaps")
	}
}
