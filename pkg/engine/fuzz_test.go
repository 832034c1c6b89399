package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// fuzzDeadline bounds one fuzzed review; fuzzSlack is how much later than
// the deadline a review may return before the target reports a hang.
const (
	fuzzDeadline = 2 * time.Second
	fuzzSlack    = 30 * time.Second
)

// fuzzEngine loads a few templates that walk the object in different ways
// (containers, labels, everything via walk), constraints with and without
// match criteria, and an expansion template.
func fuzzEngine(t testing.TB) *engine.Engine {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sDisallowedTags", imagesRego, tagsSchema))
	mustAddTemplate(t, e, legacyTemplate(t, "K8sAlways", alwaysRego, ""))
	mustAddTemplate(t, e, legacyTemplate(t, "K8sWalk", `package k8swalk
violation[{"msg": msg}] {
  walk(input.review.object, [path, value])
  is_string(value)
  contains(value, "forbidden")
  msg := sprintf("forbidden at %v", [path])
}
`, ""))
	mustAddTemplate(t, e, legacyTemplate(t, "K8sInventory", inventoryRego, ""))
	mustAddConstraint(t, e, constraint(t, "K8sDisallowedTags", "tags", "parameters:\n  tags: [latest]"))
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "labelled", "match:\n  labelSelector:\n    matchLabels: {app: web}\n  namespaceSelector:\n    matchLabels: {env: prod}\n  excludedNamespaces: [\"kube-*\"]\n  name: \"*web*\""))
	mustAddConstraint(t, e, constraint(t, "K8sAlways", "scoped", "enforcementAction: scoped\nscopedEnforcementActions:\n- action: warn\n  enforcementPoints: [{name: \"*\"}]"))
	mustAddConstraint(t, e, constraint(t, "K8sWalk", "walk", ""))
	mustAddConstraint(t, e, constraint(t, "K8sInventory", "inv", ""))
	if err := e.AddExpansion(deploymentExpansion(t, "")); err != nil {
		t.Fatal(err)
	}
	if err := e.SetInventory(context.Background(), []map[string]any{pod("shop", "web", nil, "nginx")}); err != nil {
		t.Fatal(err)
	}
	return e
}

func fuzzSeeds(f *testing.F) {
	for _, s := range []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"shop","labels":{"app":"web"}},"spec":{"containers":[{"name":"a","image":"nginx:latest"}]}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop"},"spec":{"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"a","image":"forbidden:latest"}]}}}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"template":"not an object"}}`,
		`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"kube-system","labels":{"env":"prod"}}}`,
		`{"kind":"Pod","metadata":{"name":7,"namespace":["x"],"labels":"nope"},"spec":{"containers":"x"}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":null}`,
		`{}`,
		`{"apiVersion":"/","kind":"","metadata":{"name":"","namespace":""}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"shop"},"spec":{"containers":[{"image":1e308},{"image":-0.0},{"image":null}]}}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzReview reviews arbitrary JSON objects: the engine must never panic,
// and must answer within (about) the review deadline.
func FuzzReview(f *testing.F) {
	fuzzSeeds(f)
	e := fuzzEngine(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var o map[string]any
		if err := utiljson.Unmarshal(data, &o); err != nil || o == nil {
			return
		}
		for _, op := range []string{"CREATE", "DELETE"} {
			for _, nsObj := range []map[string]any{nil, namespaceObj("shop", map[string]string{"env": "prod"})} {
				reviewWithin(t, e, engine.ObjectReview(o, op, nsObj))
			}
		}
	})
}

// FuzzReviewFromRequest builds reviews from arbitrary AdmissionRequests.
func FuzzReviewFromRequest(f *testing.F) {
	for _, s := range []string{
		`{"uid":"1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"name":"web","namespace":"shop","operation":"CREATE","userInfo":{"username":"alice"},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"shop"},"spec":{"containers":[{"name":"a","image":"nginx:latest"}]}}}`,
		`{"kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"UPDATE","object":{"metadata":{"labels":{"app":"web"}},"spec":{"template":{"spec":{"containers":[{"name":"a","image":"x:latest"}]}}}},"oldObject":{"metadata":{"name":"old"}}}`,
		`{"kind":{"version":"v1","kind":"Pod"},"operation":"DELETE","oldObject":{"metadata":{"name":"gone","namespace":"shop","labels":{"app":"web"}}}}`,
		`{"kind":{"version":"v1","kind":"Pod"},"namespace":"shop","namespaceObject":{"metadata":{"labels":{"env":"prod"}}},"object":{"metadata":{"name":"web","labels":{"app":"web"}}}}`,
		`{"kind":"Pod","object":{}}`,
		`{"kind":{"version":"v1","kind":"Pod"}}`,
		`{"kind":{"version":1,"kind":["Pod"]},"object":{"a":1},"userInfo":"root","dryRun":"yes","options":7}`,
	} {
		f.Add([]byte(s))
	}
	e := fuzzEngine(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var req map[string]any
		if err := utiljson.Unmarshal(data, &req); err != nil || req == nil {
			return
		}
		r, err := engine.ReviewFromRequest(req)
		if err != nil {
			if r != nil {
				t.Fatalf("ReviewFromRequest returned a review with error %v", err)
			}
			return
		}
		if r.Kind.Kind == "" || r.Kind.Version == "" || r.Operation == "" || (r.Object == nil && r.OldObject == nil) {
			t.Fatalf("ReviewFromRequest accepted an incomplete request: %+v", r)
		}
		reviewWithin(t, e, r)
	})
}

func reviewWithin(t *testing.T, e *engine.Engine, r *engine.Review) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fuzzDeadline)
	defer cancel()
	start := time.Now()
	resp, err := e.Review(ctx, r, engine.RecordMatched(), engine.AtEnforcementPoint(apis.PointWebhook))
	if took := time.Since(start); took > fuzzDeadline+fuzzSlack {
		t.Fatalf("review took %v, deadline %v", took, fuzzDeadline)
	}
	if err != nil {
		return
	}
	for _, res := range resp.Results {
		if res.ConstraintKind == "" || res.ConstraintName == "" || res.EnforcementAction == "" {
			t.Fatalf("incomplete result %+v", res)
		}
	}
	// Results must encode: the webhook and reports marshal them.
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(resp.Results); err != nil {
		t.Fatalf("results do not encode: %v", err)
	}
}
