package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// retag rewrites every container's tag: the Pod with nginx:latest in
// testdata/pods.yaml then passes K8sDisallowedTags.
const retag = `apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata:
  name: pin-tag
spec:
  applyTo:
  - groups: [""]
    kinds: [Pod]
    versions: [v1]
  location: "spec.containers[name: *].image"
  parameters:
    assignTag: ":1.27"
`

func TestRunTestMutatesBeforeReviewing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "retag.yaml"), []byte(retag), 0o644); err != nil {
		t.Fatal(err)
	}
	ps := []string{policies, dir}
	r := runTestCmd(t, []string{"testdata/pods.yaml"}, TestOptions{Policies: ps})
	if r.code != ExitOK || !strings.Contains(r.stdout, "2 objects reviewed against 3 constraints: 0 violations") {
		t.Errorf("with mutation: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runTestCmd(t, []string{"testdata/pods.yaml"}, TestOptions{Policies: ps, SkipMutation: true})
	if r.code != ExitDenied || !strings.Contains(r.stdout, "uses a disallowed tag <nginx:latest>") {
		t.Errorf("without mutation: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A mutator that fails on an object is an error on that object.
	odd := filepath.Join(dir, "odd.yaml")
	if err := os.WriteFile(odd, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: odd, namespace: shop}\nspec: {containers: {app: {image: nginx}}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runTestCmd(t, []string{odd}, TestOptions{Policies: ps})
	if r.code != ExitDenied || !strings.Contains(r.stdout, "mutation: mutator AssignImage/pin-tag on Pod shop/odd: spec.containers is an object, not a list") {
		t.Errorf("failing mutation: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A broken mutator is an input error naming its file.
	if err := os.WriteFile(filepath.Join(dir, "retag.yaml"), []byte(strings.Replace(retag, `":1.27"`, `"1.27"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runTestCmd(t, []string{"testdata/pods.yaml"}, TestOptions{Policies: ps})
	if r.code != ExitInvalid || !strings.Contains(r.stderr, filepath.Join(dir, "retag.yaml")+":1: AssignImage \"pin-tag\"") {
		t.Errorf("broken mutator: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// A Deployment's expanded Pod is reviewed after the Pod mutators, as the
// webhook does: the pinned tag makes the :latest Deployment pass.
func TestRunTestMutatesExpandedPods(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "retag.yaml"), []byte(retag), 0o644); err != nil {
		t.Fatal(err)
	}
	deploy := filepath.Join(dir, "deploy.yaml")
	if err := os.WriteFile(deploy, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: "nginx:latest"}]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	expansion := filepath.Join("..", "..", "examples", "disallowed-tags", "expansion.yaml")
	r := runTestCmd(t, []string{deploy}, TestOptions{Policies: []string{policies, expansion}, SkipMutation: true})
	if r.code != ExitDenied || !strings.Contains(r.stdout, "[Implied by expand-workloads]") {
		t.Fatalf("without mutation the expanded Pod must violate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runTestCmd(t, []string{deploy}, TestOptions{Policies: []string{policies, expansion, dir}})
	if r.code != ExitOK || strings.Contains(r.stdout, "Implied by") {
		t.Errorf("with mutation the expanded Pod is pinned: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
