package cel_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

const libraryDir = "../../../library"

// libraryDirs lists the library policies that ship both languages and a
// sample constraint (template.yaml and constraint.yaml).
func libraryDirs(tb testing.TB) []string {
	tb.Helper()
	templates, err := filepath.Glob(filepath.Join(libraryDir, "*", "template.yaml"))
	if err != nil || len(templates) == 0 {
		tb.Fatalf("no library templates: %v", err)
	}
	var dirs []string
	for _, tpl := range templates {
		raw, err := os.ReadFile(tpl)
		if err != nil {
			tb.Fatal(err)
		}
		dir := filepath.Dir(tpl)
		if _, err := os.Stat(filepath.Join(dir, "constraint.yaml")); err != nil || !strings.Contains(string(raw), apis.EngineCEL) {
			continue
		}
		dirs = append(dirs, dir)
	}
	return dirs
}

// loadPolicies returns an engine running only one language with the
// template and sample constraint of each directory.
func loadPolicies(tb testing.TB, only string, dirs ...string) *engine.Engine {
	tb.Helper()
	return loadPoliciesCaching(tb, only, 0, dirs...)
}

// loadPoliciesCaching is loadPolicies with the evaluation cache bounded to
// cacheBytes (negative turns it off).
func loadPoliciesCaching(tb testing.TB, only string, cacheBytes int64, dirs ...string) *engine.Engine {
	tb.Helper()
	set := &policyset.Set{}
	for _, dir := range dirs {
		paths := []string{filepath.Join(dir, "template.yaml"), filepath.Join(dir, "constraint.yaml")}
		if err := load.Walk(paths, load.Options{}, func(d *load.Document) error {
			set.Add(d)
			return nil
		}); err != nil {
			tb.Fatal(err)
		}
	}
	e, err := policyset.NewEngineCaching(0, only, cacheBytes)
	if err != nil {
		tb.Fatal(err)
	}
	if err := set.LoadInto(e); err != nil {
		tb.Fatal(err)
	}
	return e
}

// loadLibrary returns an engine running only one language with every
// library policy that ships both languages, so that both engines hold the
// same constraints.
func loadLibrary(tb testing.TB, only string) *engine.Engine {
	tb.Helper()
	return loadPolicies(tb, only, libraryDirs(tb)...)
}

func libraryPod(tb testing.TB) *engine.Review {
	tb.Helper()
	var r *engine.Review
	err := load.Walk([]string{"testdata/library-pod.yaml"}, load.Options{}, func(d *load.Document) error {
		r = engine.ObjectReview(d.Object, "CREATE", nil)
		return nil
	})
	if err != nil || r == nil {
		tb.Fatalf("reading the pod: %v", err)
	}
	return r
}

// BenchmarkLibrary reviews one Pod against the whole built-in library, once
// under each language, with the evaluation cache (the same Pod again: what
// a repeated review costs) and without it (what evaluating the templates
// costs). Both languages must report the same violations.
func BenchmarkLibrary(b *testing.B) {
	pod := libraryPod(b)
	want := ""
	for _, only := range []string{apis.EngineRego, apis.EngineCEL} {
		for _, cache := range []struct {
			name  string
			bytes int64
		}{{"cache", 0}, {"nocache", -1}} {
			b.Run(only+"/"+cache.name, func(b *testing.B) {
				e := loadPoliciesCaching(b, only, cache.bytes, libraryDirs(b)...)
				ctx := context.Background()
				review := func() *engine.Response {
					r := *pod
					resp, err := e.Review(ctx, &r)
					if err != nil || len(resp.Errors) > 0 {
						b.Fatalf("review: %v %v", err, resp.Errors)
					}
					return resp
				}
				resp := review()
				// CEL joins a policy's violations with "; " where Rego
				// reports each: compare the pieces.
				got := strings.Join(messageFragments(resp), "\n")
				if want == "" {
					want = got
				} else if got != want {
					b.Fatalf("%s reports\n%s\nwant\n%s", only, got, want)
				}
				if len(resp.Results) == 0 || resp.Evaluated < 20 {
					b.Fatalf("%d results from %d constraints: the benchmark measures too little", len(resp.Results), resp.Evaluated)
				}
				b.ReportAllocs()
				b.ResetTimer()
				cpu := processCPU()
				for i := 0; i < b.N; i++ {
					review()
				}
				if cpu := processCPU() - cpu; cpu > 0 {
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(resp.Evaluated), "ns/constraint")
			})
		}
	}
}

// TestLibraryConcurrentReviews reviews one Pod from several goroutines on
// one engine: constraint parameters are shared CEL values (run with -race).
func TestLibraryConcurrentReviews(t *testing.T) {
	e := loadLibrary(t, apis.EngineCEL)
	pod := libraryPod(t)
	review := func() (string, error) {
		r := *pod
		resp, err := e.Review(context.Background(), &r)
		if err != nil {
			return "", err
		}
		return strings.Join(messages(resp), "\n"), nil
	}
	want, err := review()
	if err != nil || want == "" {
		t.Fatalf("review: %q %v", want, err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for range 10 {
				got, err := review()
				if err == nil && got != want {
					err = fmt.Errorf("concurrent review reports\n%s\nwant\n%s", got, want)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// messageFragments splits every message at "; " and sorts the pieces.
func messageFragments(resp *engine.Response) []string {
	var out []string
	for _, m := range messages(resp) {
		out = append(out, strings.Split(m, "; ")...)
	}
	sort.Strings(out)
	return out
}
