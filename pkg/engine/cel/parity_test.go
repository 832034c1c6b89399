package cel_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

const example = "../../../examples/cel-disallowed-tags"

// loadExample returns an engine running only one language with the
// example's template and constraint.
func loadExample(t testing.TB, only string) *engine.Engine {
	t.Helper()
	set := &policyset.Set{}
	err := load.Walk([]string{filepath.Join(example, "template.yaml"), filepath.Join(example, "constraint.yaml")}, load.Options{}, func(d *load.Document) error {
		set.Add(d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, only)
	if err := set.LoadInto(e); err != nil {
		t.Fatal(err)
	}
	if got := e.Templates()[0].Engine; got != only {
		t.Fatalf("template runs %s, want %s", got, only)
	}
	return e
}

// exampleReview reads a case object: a plain object or an AdmissionReview.
func exampleReview(t testing.TB, path string) *engine.Review {
	t.Helper()
	var r *engine.Review
	err := load.Walk([]string{filepath.Join(example, path)}, load.Options{}, func(d *load.Document) error {
		if d.Kind() == "AdmissionReview" {
			var err error
			r, err = engine.ReviewFromRequest(d.Object["request"].(map[string]any))
			return err
		}
		r = engine.ObjectReview(d.Object, "CREATE", nil)
		return nil
	})
	if err != nil || r == nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

// TestRegoAndCELAgreeOnExampleSuite runs every case of the example suite
// through each language alone and requires the same messages.
func TestRegoAndCELAgreeOnExampleSuite(t *testing.T) {
	var suite apis.Suite
	err := load.Walk([]string{filepath.Join(example, "suite.yaml")}, load.Options{}, func(d *load.Document) error {
		return load.Into(d, &suite)
	})
	if err != nil {
		t.Fatal(err)
	}
	regoE, celE := loadExample(t, apis.EngineRego), loadExample(t, apis.EngineCEL)
	n := 0
	for _, test := range suite.Tests {
		for _, c := range test.Cases {
			n++
			var got [2][]string
			for i, e := range []*engine.Engine{regoE, celE} {
				resp, err := e.Review(context.Background(), exampleReview(t, c.Object))
				if err != nil || len(resp.Errors) > 0 {
					t.Fatalf("%s: %v %v", c.Name, err, resp.Errors)
				}
				got[i] = messages(resp)
			}
			if strings.Join(got[0], "|") != strings.Join(got[1], "|") {
				t.Errorf("%s: rego %q, cel %q", c.Name, got[0], got[1])
			}
		}
	}
	if n < 5 {
		t.Fatalf("only %d cases found", n)
	}
}

// BenchmarkReview compares the two languages on the same policy and Pod.
func BenchmarkReview(b *testing.B) {
	for _, only := range []string{apis.EngineRego, apis.EngineCEL} {
		b.Run(only, func(b *testing.B) {
			e := loadExample(b, only)
			obj := exampleReview(b, "samples/pod-two-bad.yaml")
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := *obj
				resp, err := e.Review(ctx, &r)
				if err != nil || len(resp.Results) != 2 {
					b.Fatalf("review: %v %+v", err, resp)
				}
			}
		})
	}
}
