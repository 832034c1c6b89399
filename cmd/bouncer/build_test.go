package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// buildTags are the tags the Makefile, the Dockerfile, bench/run and the
// end-to-end tests build bouncer with.
const buildTags = "kustomize_disable_go_plugin_support"

// TestBuildTagsDropGoPlugins guards the build tag against a kustomize
// upgrade that renames it: linking Go's plugin package makes the binary
// dynamically linked with every symbol exported, ~30 MB more resident.
func TestBuildTagsDropGoPlugins(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-tags", buildTags, "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if slices.Contains(deps, "plugin") {
		t.Fatalf("with -tags %s bouncer still links Go's plugin package; find who imports it (go list -deps -f '{{.ImportPath}}: {{.Imports}}')", buildTags)
	}
	if !slices.Contains(deps, "sigs.k8s.io/kustomize/api/krusty") {
		t.Fatal("bouncer no longer links kustomize: drop the build tag")
	}
}
