package gitsource

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bouncer-policy/bouncer/internal/gitserver"
)

// BenchmarkFetchUnchanged fetches a branch of 1,000 policy files that did
// not change: into the kept cache (a ref listing) and into an empty cache
// directory (a clone, as every pass did before the cache).
func BenchmarkFetchUnchanged(b *testing.B) {
	ctx := context.Background()
	srv := &gitserver.Server{Root: b.TempDir()}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close(ctx)
	bare, err := srv.InitBare(ctx, "policies")
	if err != nil {
		b.Fatal(err)
	}
	work := b.TempDir()
	for i := range 1000 {
		p := filepath.Join(work, "policies", fmt.Sprintf("c%04d.yaml", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		doc := fmt.Sprintf("apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sRequiredLabels\nmetadata:\n  name: c%04d\nspec:\n  parameters:\n    labels: [team]\n", i)
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"commit", "-q", "-m", "1000 constraints"}, {"push", "-q", bare, "main"}} {
		if out, err := gitCmd(work, args...).CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	spec := Spec{Repo: srv.URL("policies")}

	b.Run("cached", func(b *testing.B) {
		f := &Fetcher{CacheDir: b.TempDir()}
		if _, err := f.Fetch(ctx, spec); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			if _, err := f.Fetch(ctx, spec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fresh clone", func(b *testing.B) {
		root := b.TempDir()
		i := 0
		for b.Loop() {
			i++
			if _, err := (&Fetcher{CacheDir: filepath.Join(root, fmt.Sprint(i))}).Fetch(ctx, spec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
