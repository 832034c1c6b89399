package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

func runMAP(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"map", "generate"}, args...))
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

const assignImage = `apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata:
  name: mirror
spec:
  applyTo:
  - groups: [""]
    kinds: [Pod]
    versions: [v1]
  location: "spec.containers[name: *].image"
  parameters:
    assignDomain: mirror.example.com
`

func TestMAPGenerate(t *testing.T) {
	dir := t.TempDir()
	mutators := filepath.Join(dir, "mutators.yaml")
	if err := os.WriteFile(mutators, []byte(mutateMutators), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runMAP(t, "", mutators)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	docs := strings.Split(out, "\n---\n")
	if len(docs) != 4 {
		t.Fatalf("want a policy and a binding per mutator (4 documents), got %d:\n%s", len(docs), out)
	}
	p := &admissionregistrationv1.MutatingAdmissionPolicy{}
	if err := yaml.UnmarshalStrict([]byte(docs[0]), p); err != nil {
		t.Fatal(err)
	}
	if p.Kind != "MutatingAdmissionPolicy" || p.APIVersion != "admissionregistration.k8s.io/v1" || p.Name != "bouncer-assign-pull-always" ||
		len(p.Spec.Mutations) != 1 || !strings.Contains(p.Spec.Mutations[0].JSONPatch.Expression, `"/spec/containers/" + string(i2) + "/imagePullPolicy"`) {
		t.Errorf("first policy:\n%s", docs[0])
	}
	b := &admissionregistrationv1.MutatingAdmissionPolicyBinding{}
	if err := yaml.UnmarshalStrict([]byte(docs[1]), b); err != nil || b.Spec.PolicyName != p.Name {
		t.Errorf("binding (%v):\n%s", err, docs[1])
	}
	if strings.Contains(out, "creationTimestamp") || strings.Contains(out, "status:") {
		t.Errorf("output carries empty server fields:\n%s", out)
	}

	// One mutator with no policy form: the rest is written, exit 1.
	code, out2, stderr := runMAP(t, assignImage, mutators, "-")
	if code != 1 || out2 != out || !strings.Contains(stderr, "not expressible: <stdin>:1: AssignImage/mirror: spec.parameters cannot be expressed") ||
		!strings.Contains(stderr, "1 of 3 mutators have no MutatingAdmissionPolicy form") {
		t.Errorf("with AssignImage: exit %d, stderr:\n%s", code, stderr)
	}

	// -o DIR writes one file per mutator.
	outDir := filepath.Join(dir, "out")
	if code, _, stderr := runMAP(t, "", "-o", outDir, "--failure-policy", "Ignore", mutators); code != 0 {
		t.Fatalf("-o: exit %d, %s", code, stderr)
	}
	b2, err := os.ReadFile(filepath.Join(outDir, "bouncer-assignmetadata-team.yaml"))
	if err != nil || !strings.Contains(string(b2), "failurePolicy: Ignore") || !strings.Contains(string(b2), "kind: MutatingAdmissionPolicyBinding") {
		t.Errorf("-o file (%v):\n%s", err, b2)
	}
}

func TestMAPGenerateBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	src := strings.Replace(mutateMutators, `"spec.containers[name: *].imagePullPolicy"`, `"spec.containers[name: *"`, 1)
	if err := os.WriteFile(bad, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runMAP(t, "", bad)
	if code != 2 || out != "" || !strings.Contains(stderr, "bad.yaml:1") || !strings.Contains(stderr, "location") {
		t.Errorf("bad location: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if code, _, stderr := runMAP(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n", "-"); code != 2 || !strings.Contains(stderr, "no mutators found") {
		t.Errorf("no mutators: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runMAP(t, "", "--failure-policy", "Sometimes", bad); code != 2 || !strings.Contains(stderr, "--failure-policy") {
		t.Errorf("bad flag: exit %d, %q", code, stderr)
	}
}
