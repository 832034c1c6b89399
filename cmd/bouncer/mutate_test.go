package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func runMutate(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"mutate"}, args...))
	err := root.ExecuteContext(context.Background())
	var ee exitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.code, out.String(), errb.String()
	}
	return 2, out.String(), errb.String() + err.Error()
}

const mutateMutators = `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: pull-always
spec:
  applyTo:
  - groups: [""]
    kinds: [Pod]
    versions: [v1]
  location: "spec.containers[name: *].imagePullPolicy"
  parameters:
    assign:
      value: Always
---
apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata:
  name: team
spec:
  match:
    scope: Namespaced
    namespaceSelector:
      matchLabels: {owner: payments}
  location: metadata.labels.team
  parameters:
    assign:
      fromMetadata: {field: namespace}
`

const mutateObjects = `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
spec:
  containers:
  - name: app
    image: nginx:1.27
---
apiVersion: v1
kind: Pod
metadata:
  name: db
  namespace: other
spec:
  containers:
  - name: pg
    image: postgres:17
    imagePullPolicy: Always
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {owner: payments}
`

func mutateDir(t *testing.T) (policies, objects string) {
	t.Helper()
	dir := t.TempDir()
	policies = filepath.Join(dir, "mutators.yaml")
	objects = filepath.Join(dir, "objects.yaml")
	if err := os.WriteFile(policies, []byte(mutateMutators), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(objects, []byte(mutateObjects), 0o644); err != nil {
		t.Fatal(err)
	}
	return policies, objects
}

func TestMutateYAML(t *testing.T) {
	policies, objects := mutateDir(t)
	code, out, errs := runMutate(t, "", "--policy", policies, objects)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	docs := strings.Split(out, "---\n")
	if len(docs) != 3 {
		t.Fatalf("%d documents, want 3 (two Pods and the Namespace):\n%s", len(docs), out)
	}
	var web, db map[string]any
	if err := yaml.Unmarshal([]byte(docs[0]), &web); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(docs[1]), &db); err != nil {
		t.Fatal(err)
	}
	// The Namespace, later in the input, carries the label the selector wants.
	if got := web["metadata"].(map[string]any)["labels"]; !reflect.DeepEqual(got, map[string]any{"team": "shop"}) {
		t.Errorf("web labels = %v", got)
	}
	if got := web["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["imagePullPolicy"]; got != "Always" {
		t.Errorf("web imagePullPolicy = %v", got)
	}
	if _, ok := db["metadata"].(map[string]any)["labels"]; ok {
		t.Errorf("db, in a namespace the selector does not match, got labels: %v", db["metadata"])
	}
}

func TestMutateDiffAndPatch(t *testing.T) {
	policies, objects := mutateDir(t)
	code, out, errs := runMutate(t, "", "--policy", policies, "--diff", objects)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"--- " + objects + ":1 Pod shop/web\n",
		"+++ " + objects + ":1 Pod shop/web mutated by Assign/pull-always, AssignMetadata/team\n",
		"+  labels:\n+    team: shop\n",
		"+    imagePullPolicy: Always\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Pod other/db") {
		t.Errorf("diff shows the unchanged Pod:\n%s", out)
	}

	code, out, errs = runMutate(t, "", "--policy", policies, "-o", "json-patch", objects)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d patch lines, want 1 (only web changes):\n%s", len(lines), out)
	}
	var p struct {
		Name     string
		Mutators []string
		Patch    []map[string]any
	}
	if err := json.Unmarshal([]byte(lines[0]), &p); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"op": "add", "path": "/metadata/labels", "value": map[string]any{"team": "shop"}},
		{"op": "add", "path": "/spec/containers/0/imagePullPolicy", "value": "Always"},
	}
	if p.Name != "web" || !reflect.DeepEqual(p.Patch, want) || len(p.Mutators) != 2 {
		t.Errorf("patch line = %+v", p)
	}
}

func TestMutateStdinAndMixedInput(t *testing.T) {
	// Mutators may come in the input itself, on stdin; they are not printed.
	code, out, errs := runMutate(t, mutateMutators+"---\n"+mutateObjects, "-")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if strings.Contains(out, "mutations.gatekeeper.sh") || strings.Count(out, "kind: Pod") != 2 || !strings.Contains(out, "team: shop") {
		t.Errorf("output:\n%s", out)
	}
}

func TestMutateErrors(t *testing.T) {
	policies, objects := mutateDir(t)
	dir := filepath.Dir(policies)
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte(strings.Replace(mutateMutators, `"spec.containers[name: *].imagePullPolicy"`, `"spec.containers[name: *.imagePullPolicy"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	notList := filepath.Join(dir, "notlist.yaml")
	if err := os.WriteFile(notList, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: odd, namespace: shop}\nspec: {containers: {app: {}}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"broken mutator", []string{"--policy", broken, objects}, 2, broken + ":1: Assign \"pull-always\": spec.location"},
		{"no mutators", []string{objects}, 2, "no mutators found"},
		{"missing file", []string{"--policy", policies, filepath.Join(dir, "nope.yaml")}, 2, "nope.yaml"},
		{"bad output", []string{"--policy", policies, "-o", "xml", objects}, 2, "--output \"xml\""},
		{"diff and patch", []string{"--policy", policies, "--diff", "-o", "json-patch", objects}, 2, "choose one"},
		{"mutation fails", []string{"--policy", policies, notList}, 1, notList + ":1: mutator Assign/pull-always on Pod shop/odd: spec.containers is an object, not a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runMutate(t, "", tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q\n%s", code, errs, tc.code, tc.want, out)
			}
		})
	}
}
