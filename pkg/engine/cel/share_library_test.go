package cel_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

// TestSharedResultsMatchSeparateEngines reviews every sample of the built-in
// library with all CEL templates in one engine (review-only variables and
// match conditions computed once per review, and shared) and with each
// template alone in an engine of its own (nothing shared): the findings
// must be the same.
func TestSharedResultsMatchSeparateEngines(t *testing.T) {
	dirs := libraryDirs(t)
	var alone []*engine.Engine
	for _, dir := range dirs {
		alone = append(alone, loadPolicies(t, apis.EngineCEL, dir))
	}
	together := loadPolicies(t, apis.EngineCEL, dirs...)
	samples, err := filepath.Glob(filepath.Join(libraryDir, "*", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	findings := func(resp *engine.Response) []string {
		var out []string
		for _, r := range resp.Results {
			out = append(out, fmt.Sprintf("%s/%s: %s", r.ConstraintKind, r.ConstraintName, r.Message))
		}
		for _, e := range resp.Errors {
			out = append(out, "error: "+e.Error())
		}
		slices.Sort(out)
		return out
	}
	reviewed, found := 0, 0
	err = load.Walk(samples, load.Options{}, func(d *load.Document) error {
		if policyset.Classify(d) != policyset.Object || load.CheckObject(d) != nil {
			return nil
		}
		for _, op := range []string{"CREATE", "UPDATE", "DELETE"} {
			review := func(e *engine.Engine) []string {
				var old map[string]any
				if op != "CREATE" {
					old = d.Object
				}
				r := engine.ObjectReview(d.Object, op, nil)
				r.OldObject = old
				resp, err := e.Review(ctx, r)
				if err != nil {
					t.Fatalf("%s: %v", d.Location(), err)
				}
				return findings(resp)
			}
			want := []string{}
			for _, e := range alone {
				want = append(want, review(e)...)
			}
			slices.Sort(want)
			got := review(together)
			if got == nil {
				got = []string{}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s %s: one engine finds\n%s\nseparate engines find\n%s", op, d.Location(), strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			reviewed++
			found += len(got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if reviewed < 100 || found < 50 {
		t.Fatalf("reviewed %d objects with %d findings: the test checks too little", reviewed, found)
	}
}
