package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/load"
)

// applyRendered server-side applies Namespaces and CRDs for real (the rest
// needs them to exist) and everything else with dry-run, so the apiserver
// validates every object without running an image that is not there.
func applyRendered(t *testing.T, docs []*load.Document) {
	t.Helper()
	a, err := apply.New(restConfig(), "bouncer-e2e")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kinds := map[string]int{}
	for _, pass := range []bool{true, false} {
		for _, d := range docs {
			first := d.Kind() == "Namespace" || d.Kind() == "CustomResourceDefinition"
			if first != pass {
				continue
			}
			if err := a.Apply(ctx, d, !first); err != nil {
				t.Errorf("%s %s: %v", d.Kind(), d.Name(), err)
			}
			kinds[d.Kind()]++
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service", "PodDisruptionBudget", "CustomResourceDefinition"} {
		if kinds[k] == 0 {
			t.Errorf("rendered manifests have no %s", k)
		}
	}
}

func TestKustomizeManifestsAreValid(t *testing.T) {
	var docs []*load.Document
	if err := load.Kustomize(filepath.Join(repoRoot, "deploy", "kustomize"), func(d *load.Document) error {
		docs = append(docs, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	applyRendered(t, docs)
}

func TestHelmChartIsValid(t *testing.T) {
	helm, err := exec.LookPath("helm")
	if err != nil {
		gobin := filepath.Join(os.Getenv("HOME"), "go", "bin", "helm")
		if _, serr := os.Stat(gobin); serr != nil {
			t.Fatalf("helm not found (install: go install helm.sh/helm/v4/cmd/helm@v4.3.1): %v", err)
		}
		helm = gobin
	}
	cmd := exec.Command(helm, "template", "bouncer", filepath.Join(repoRoot, "deploy", "helm", "bouncer"),
		"--namespace", "bouncer-helm", "--include-crds", "--set", "failurePolicy=Fail", "--set", "exemptNamespaces={team-infra}")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	if !strings.Contains(string(out), "--failure-policy=Fail") || !strings.Contains(string(out), "--exempt-namespaces=team-infra") || !strings.Contains(string(out), "--mutation=true") || !strings.Contains(string(out), "--sync-map=false") {
		t.Fatal("values are not rendered into the Deployment's arguments")
	}
	var docs []*load.Document
	ns := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bouncer-helm\n---\n"
	if err := load.Read("helm-template", strings.NewReader(ns+string(out)), func(d *load.Document) error {
		docs = append(docs, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	applyRendered(t, docs)
}
