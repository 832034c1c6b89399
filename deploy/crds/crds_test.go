package crds

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// The Helm chart carries copies of the CRDs (Helm installs crds/ before
// templates); they must not drift from the ones `bouncer serve` applies.
func TestHelmChartCRDsMatch(t *testing.T) {
	for _, f := range Files {
		ours, err := FS.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		chart, err := os.ReadFile(filepath.Join("..", "helm", "bouncer", "crds", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, chart) {
			t.Errorf("deploy/helm/bouncer/crds/%s differs from deploy/crds/%s; copy it over", f, f)
		}
		var v map[string]any
		if err := yaml.Unmarshal(ours, &v); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
