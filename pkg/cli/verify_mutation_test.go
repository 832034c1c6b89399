package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const suiteMutator = `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: non-root
spec:
  applyTo:
  - groups: [""]
    kinds: [Pod]
    versions: [v1]
  location: spec.securityContext.runAsNonRoot
  parameters:
    assign:
      value: true
`

const suitePod = `apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
  - name: c
    image: nginx:1.27
`

// TestVerifyMutatedAssertions: a case's mutated file is compared with what
// the test's mutators make of its object, and the wrong expectation fails
// with the patch between them.
func TestVerifyMutatedAssertions(t *testing.T) {
	dir := t.TempDir()
	mutated := strings.Replace(suitePod, "spec:\n", "spec:\n  securityContext:\n    runAsNonRoot: true\n", 1)
	files := map[string]string{
		"mutator.yaml": suiteMutator,
		"pod.yaml":     suitePod,
		"good.yaml":    mutated,
		"bad.yaml":     strings.Replace(mutated, "runAsNonRoot: true", "runAsNonRoot: false", 1),
		"suite.yaml": `apiVersion: test.gatekeeper.sh/v1alpha1
kind: Suite
metadata: {name: s}
tests:
- name: mutation
  mutators: [mutator.yaml]
  cases:
  - {name: right, object: pod.yaml, mutated: good.yaml}
  - {name: wrong, object: pod.yaml, mutated: bad.yaml}
  - {name: nothing asserted, object: pod.yaml}
- name: mutated without mutators
  template: t.yaml
  constraint: c.yaml
  cases:
  - {name: x, object: pod.yaml, mutated: good.yaml}
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	sum, err := Verify(context.Background(), []string{dir}, VerifyOptions{Stdout: &out, Stderr: &out, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Passed != 1 {
		t.Errorf("passed %d, want 1 (the right expectation):\n%s", sum.Passed, out.String())
	}
	for _, want := range []string{
		`FAIL s/mutation/wrong: the mutated object differs from bad.yaml`,
		`"path":"/spec/securityContext/runAsNonRoot"`,
		`FAIL s/mutation/nothing asserted: a test with mutators only needs mutated`,
		`FAIL s/mutated without mutators`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
