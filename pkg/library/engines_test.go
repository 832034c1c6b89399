package library_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/library"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"sigs.k8s.io/yaml"
)

// regoOnly lists the library policies that ship no CEL (K8sNativeValidation)
// code, with the reason. Every other policy must ship both languages.
var regoOnly = map[string]string{
	"unique-ingress-host": "reads other Ingresses from data.inventory; Gatekeeper's CEL has no inventory",
}

func hasCEL(t *testing.T, p library.Policy) bool {
	t.Helper()
	var tmpl apis.ConstraintTemplate
	if err := yaml.Unmarshal(p.Template, &tmpl); err != nil {
		t.Fatal(err)
	}
	for _, target := range tmpl.Spec.Targets {
		for _, c := range target.Code {
			if c.Engine == apis.EngineCEL {
				return true
			}
		}
	}
	return false
}

// TestLibraryEngines holds each policy's two implementations to each other:
// its suite passes under Rego alone and under CEL alone, and both engines
// report the same violations (count and messages) for every case.
func TestLibraryEngines(t *testing.T) {
	withCEL := 0
	for _, p := range policies(t) {
		t.Run(p.Name, func(t *testing.T) {
			cel := hasCEL(t, p)
			reason, listed := regoOnly[p.Name]
			switch {
			case !cel && !listed:
				t.Fatal("the template has no K8sNativeValidation code: add it, or list the policy in regoOnly with the reason")
			case cel && listed:
				t.Fatalf("the template has K8sNativeValidation code but regoOnly says %q: remove it from regoOnly", reason)
			}
			suite := filepath.Join(libraryDir, p.Name, "suite.yaml")
			engines := []string{apis.EngineRego}
			if cel {
				withCEL++
				engines = append(engines, apis.EngineCEL)
			}
			for _, only := range engines {
				var out bytes.Buffer
				sum, err := cli.Verify(context.Background(), []string{suite}, cli.VerifyOptions{Engine: only, Timeout: 10 * time.Second, Stdout: &out, Stderr: &out})
				if err != nil {
					t.Fatalf("verify --engine %s: %v\n%s", only, err, out.String())
				}
				if sum.Failed > 0 || sum.Passed == 0 {
					t.Errorf("verify --engine %s: %d of %d cases failed:\n%s", only, sum.Failed, sum.Cases, out.String())
				}
			}
			if cel {
				compareEngines(t, suite)
			}
		})
	}
	if withCEL+len(regoOnly) != len(policies(t)) {
		t.Errorf("%d policies with CEL and %d Rego-only, of %d", withCEL, len(regoOnly), len(policies(t)))
	}
}

// compareEngines reviews every case of a suite with a Rego-only and a
// CEL-only engine and requires the same violations from both.
func compareEngines(t *testing.T, suitePath string) {
	t.Helper()
	dir := filepath.Dir(suitePath)
	suites := readSuites(t, suitePath)
	ctx := context.Background()
	for _, s := range suites {
		for _, test := range s.Tests {
			rego := suiteEngine(t, dir, test, apis.EngineRego)
			cel := suiteEngine(t, dir, test, apis.EngineCEL)
			for _, c := range test.Cases {
				r := caseReview(t, filepath.Join(dir, c.Object))
				want := violations(ctx, t, rego, r)
				got := violations(ctx, t, cel, r)
				if !sameViolations(want, got) {
					t.Errorf("%s/%s: violations differ:\nrego: %q\ncel:  %q", test.Name, c.Name, want, got)
				}
			}
		}
	}
}

// suiteEngine loads a suite test's template, constraint and expansion into
// an engine that runs only the given language.
func suiteEngine(t *testing.T, dir string, test apis.SuiteTest, only string) *engine.Engine {
	t.Helper()
	return suiteEngineCaching(t, dir, test, only, 0)
}

// suiteEngineCaching is suiteEngine with the evaluation cache bounded to
// cacheBytes (negative: off).
func suiteEngineCaching(t *testing.T, dir string, test apis.SuiteTest, only string, cacheBytes int64) *engine.Engine {
	t.Helper()
	return suiteEngineTimeout(t, dir, test, only, cacheBytes, 10*time.Second)
}

// suiteEngineTimeout is suiteEngineCaching with the given review deadline.
func suiteEngineTimeout(t *testing.T, dir string, test apis.SuiteTest, only string, cacheBytes int64, timeout time.Duration) *engine.Engine {
	t.Helper()
	set := &policyset.Set{}
	paths := []string{filepath.Join(dir, test.Template), filepath.Join(dir, test.Constraint)}
	if test.Expansion != "" {
		paths = append(paths, filepath.Join(dir, test.Expansion))
	}
	if err := load.Walk(paths, load.Options{}, func(d *load.Document) error {
		if !set.Add(d) {
			return fmt.Errorf("%s: %s %q is not a policy document", d.Location(), d.Kind(), d.Name())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e, err := policyset.NewEngineCaching(timeout, only, cacheBytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := set.LoadInto(e); err != nil {
		t.Fatalf("%s, engine %s: %v", test.Name, only, err)
	}
	return e
}

// caseReview builds a case's review as bouncer verify does: an
// AdmissionReview as given, any other object as a CREATE.
func caseReview(t *testing.T, path string) *engine.Review {
	t.Helper()
	var docs []*load.Document
	if err := load.Walk([]string{path}, load.Options{}, func(d *load.Document) error {
		docs = append(docs, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("%s: want one object, found %d", path, len(docs))
	}
	d := docs[0]
	var r *engine.Review
	if d.Kind() == "AdmissionReview" && strings.HasPrefix(d.APIVersion(), "admission.k8s.io/") {
		req, _ := d.Object["request"].(map[string]any)
		var err error
		if r, err = engine.ReviewFromRequest(req); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	} else {
		r = engine.ObjectReview(d.Object, "CREATE", nil)
	}
	if r.NamespaceObject == nil && r.Namespace != "" && r.Kind.Kind != "Namespace" {
		r.NamespaceObject = map[string]any{
			"apiVersion": "v1",
			"kind":       "Namespace",
			"metadata": map[string]any{
				"name":   r.Namespace,
				"labels": map[string]any{"kubernetes.io/metadata.name": r.Namespace},
			},
		}
	}
	return r
}

// violations reviews r and returns the messages, sorted.
func violations(ctx context.Context, t *testing.T, e *engine.Engine, r *engine.Review) []string {
	t.Helper()
	resp, err := e.Review(ctx, r, engine.AtEnforcementPoint(apis.PointCLI))
	if err == nil && len(resp.Errors) > 0 {
		errs := make([]error, len(resp.Errors))
		for i, x := range resp.Errors {
			errs[i] = x
		}
		err = errors.Join(errs...)
	}
	if err != nil {
		t.Fatalf("review: %v", err)
	}
	out := make([]string, len(resp.Results))
	for i, res := range resp.Results {
		out[i] = res.Message
	}
	slices.Sort(out)
	return out
}

// sameViolations reports whether the CEL messages list exactly the Rego
// messages. The library's CEL variants report all of a review's violations
// in one message joined with "; " where Rego reports one result each, so
// every CEL message must split into Rego messages, and together they must
// use each Rego message once. The split is searched for, not cut at "; ",
// because a Rego message may itself contain "; ".
func sameViolations(rego, cel []string) bool {
	unused := make(map[string]int, len(rego))
	for _, m := range rego {
		unused[m]++
	}
	for _, m := range cel {
		// An expansion's "[Implied by NAME] " starts each Rego result but
		// only the joined CEL message.
		prefix := ""
		if strings.HasPrefix(m, "[Implied by ") {
			if end := strings.Index(m, "] "); end >= 0 {
				prefix, m = m[:end+len("] ")], m[end+len("] "):]
			}
		}
		if !splitInto(m, prefix, unused) {
			return false
		}
	}
	for _, n := range unused {
		if n != 0 {
			return false
		}
	}
	return true
}

// splitInto consumes from unused the messages that, each without prefix,
// joined with "; " make msg, backtracking over the ways to split it; it leaves unused as it was
// when there is none.
func splitInto(msg, prefix string, unused map[string]int) bool {
	for m, n := range unused {
		body, ok := strings.CutPrefix(m, prefix)
		if n == 0 || !ok || !strings.HasPrefix(msg, body) {
			continue
		}
		rest := msg[len(body):]
		if rest != "" && !strings.HasPrefix(rest, "; ") {
			continue
		}
		unused[m]--
		if rest == "" || splitInto(rest[len("; "):], prefix, unused) {
			return true
		}
		unused[m]++
	}
	return false
}

// fragments splits CEL messages at "; " and sorts the pieces, so two CEL
// runs compare equal whatever order a map's iteration put the joined
// violations in.
func fragments(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, strings.Split(m, "; ")...)
	}
	slices.Sort(out)
	return out
}
