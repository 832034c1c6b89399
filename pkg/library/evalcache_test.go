package library_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

// TestEvalCacheDifferential runs every case of every library suite, in
// each language the template ships, through one engine with the
// evaluation cache on (twice over, so the second pass is answered from the
// cache wherever the read sets allow) and through an engine without it,
// with each case's inventory, and requires the same results: constraints,
// messages, details and errors. Cases of a test differ in exactly the
// fields their template reads, so a read the analysis missed shows here as
// one case's answer served for another.
func TestEvalCacheDifferential(t *testing.T) {
	ctx := context.Background()
	hits := int64(0)
	for _, p := range policies(t) {
		t.Run(p.Name, func(t *testing.T) {
			suitePath := filepath.Join(libraryDir, p.Name, "suite.yaml")
			dir := filepath.Dir(suitePath)
			langs := []string{apis.EngineRego}
			if hasCEL(t, p) {
				langs = append(langs, apis.EngineCEL)
			}
			for _, s := range readSuites(t, suitePath) {
				for _, test := range s.Tests {
					if test.Template == "" {
						continue // a ValidatingAdmissionPolicy test
					}
					for _, only := range langs {
						cached := suiteEngineCaching(t, dir, test, only, 0)
						plain := suiteEngineCaching(t, dir, test, only, -1)
						for pass := 0; pass < 2; pass++ {
							for _, c := range test.Cases {
								r := caseReview(t, filepath.Join(dir, c.Object))
								inv := caseInventory(t, dir, c)
								want := outcome(ctx, t, plain, r, inv)
								got := outcome(ctx, t, cached, r, inv)
								if !slices.Equal(got, want) {
									t.Errorf("%s/%s (%s, pass %d): with the cache %q, without %q", test.Name, c.Name, only, pass, got, want)
								}
							}
						}
						hits += cached.EvalCacheStats().Hits
						if st := plain.EvalCacheStats(); st.Hits+st.Misses != 0 {
							t.Errorf("engine without a cache counted %+v", st)
						}
					}
				}
			}
		})
	}
	if hits == 0 {
		t.Error("the cache answered nothing: the differential compared nothing")
	}
	t.Logf("%d evaluations answered from the cache", hits)
}

func readSuites(t *testing.T, path string) []apis.Suite {
	t.Helper()
	var suites []apis.Suite
	err := load.Walk([]string{path}, load.Options{}, func(d *load.Document) error {
		if policyset.Classify(d) != policyset.Suite {
			return nil
		}
		var s apis.Suite
		if err := load.Into(d, &s); err != nil {
			return err
		}
		suites = append(suites, s)
		return nil
	})
	if err != nil || len(suites) == 0 {
		t.Fatalf("reading %s: %v (%d suites)", path, err, len(suites))
	}
	return suites
}

func caseInventory(t *testing.T, dir string, c apis.SuiteCase) []map[string]any {
	t.Helper()
	var inv []map[string]any
	for _, p := range c.Inventory {
		if err := load.Walk([]string{filepath.Join(dir, p)}, load.Options{}, func(d *load.Document) error {
			inv = append(inv, d.Object)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return inv
}

// outcome reviews r with inv as the inventory and lists every result
// (constraint, message, details) and error, sorted.
func outcome(ctx context.Context, t *testing.T, e *engine.Engine, r *engine.Review, inv []map[string]any) []string {
	t.Helper()
	if err := e.SetInventory(ctx, inv); err != nil {
		t.Fatal(err)
	}
	resp, err := e.Review(ctx, r, engine.AtEnforcementPoint(apis.PointCLI))
	var out []string
	if err != nil {
		out = append(out, "review error: "+err.Error())
	}
	for _, res := range resp.Results {
		details, err := json.Marshal(res.Details)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.ConstraintKind+"/"+res.ConstraintName+": "+res.Message+" "+string(details))
	}
	for _, x := range resp.Errors {
		out = append(out, "error: "+x.Error())
	}
	slices.Sort(out)
	return out
}

// TestLibraryReadSetsAreBounded: the evaluation cache helps only templates
// whose reads are bounded; every library template's are, in each language
// it ships (a template that stops being so shows here, not as a slowdown).
func TestLibraryReadSetsAreBounded(t *testing.T) {
	for _, p := range policies(t) {
		langs := []string{apis.EngineRego}
		if hasCEL(t, p) {
			langs = append(langs, apis.EngineCEL)
		}
		for _, only := range langs {
			e, err := policyset.NewEngine(10*time.Second, only)
			if err != nil {
				t.Fatal(err)
			}
			var tmpl apis.ConstraintTemplate
			if err := yaml.Unmarshal(p.Template, &tmpl); err != nil {
				t.Fatal(err)
			}
			ct, err := e.CompileTemplate(&tmpl)
			if err != nil {
				t.Fatalf("%s (%s): %v", p.Name, only, err)
			}
			if _, ok := ct.Reads(); !ok {
				t.Errorf("%s (%s): reads of the review are unbounded", p.Name, only)
			}
		}
	}
}
