package vet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkDir10000 vets a commit of one template and 10,000 constraints
// in 100 files, the size the git sync's scale target names.
func BenchmarkDir10000(b *testing.B) {
	dir := b.TempDir()
	tpl, err := os.ReadFile("testdata/good/template.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "template.yaml"), tpl, 0o644); err != nil {
		b.Fatal(err)
	}
	for f := range 100 {
		var s strings.Builder
		for i := range 100 {
			fmt.Fprintf(&s, "---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sRequiredLabels\nmetadata:\n  name: c-%d-%d\nspec:\n  match:\n    namespaces: [ns-%d]\n  parameters:\n    labels: [team, owner-%d]\n", f, i, i, i)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("c%03d.yaml", f)), []byte(s.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := Dir(context.Background(), dir, Options{})
		if err != nil || !res.OK() || len(res.Objects) != 10001 {
			b.Fatalf("err %v, %d findings, %d objects", err, len(res.Findings), len(res.Objects))
		}
	}
}
