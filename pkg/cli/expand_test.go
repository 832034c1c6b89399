package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const expandDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: Web
  namespace: shop
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:latest
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: payments}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: not-expanded
  namespace: shop
`

const expandMutators = `apiVersion: mutations.gatekeeper.sh/v1alpha1
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
---
apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata:
  name: team-label
spec:
  match:
    namespaceSelector: {matchLabels: {team: payments}}
  location: "metadata.labels.team"
  parameters:
    assign:
      value: payments
`

func runExpandCmd(t *testing.T, paths []string, o ExpandOptions) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	o.Stdout, o.Stderr = &out, &errOut
	code := RunExpand(context.Background(), paths, o)
	return code, out.String(), errOut.String()
}

func TestExpandPrintsMutatedResultants(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"deploy.yaml": expandDeployment, "mutators.yaml": expandMutators} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lib := filepath.Join("..", "..", "library", "expansion")
	code, out, errOut := runExpandCmd(t, []string{filepath.Join(dir, "deploy.yaml")}, ExpandOptions{Policies: []string{lib, filepath.Join(dir, "mutators.yaml")}})
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	// One Pod, named as Gatekeeper names it, mutated: the tag pinned and
	// the label the Namespace's selector asks for.
	for _, want := range []string{"kind: Pod", "name: web-pod", "namespace: shop", "image: nginx:1.27", "team: payments"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "kind: Pod") != 1 || strings.Contains(out, "ConfigMap") || strings.Contains(out, "nginx:latest") {
		t.Errorf("want exactly the one mutated Pod:\n%s", out)
	}

	code, out, _ = runExpandCmd(t, []string{filepath.Join(dir, "deploy.yaml"), lib}, ExpandOptions{Output: "json"})
	if code != ExitOK || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"image":"nginx:latest"`) {
		t.Errorf("json, no mutators: exit %d\n%s", code, out)
	}
}

func TestExpandBadInput(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "deploy.yaml")
	if err := os.WriteFile(p, []byte(expandDeployment), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runExpandCmd(t, []string{p}, ExpandOptions{}); code != ExitInvalid || !strings.Contains(errOut, "no ExpansionTemplates") {
		t.Errorf("no templates: exit %d %s", code, errOut)
	}
	if code, _, errOut := runExpandCmd(t, nil, ExpandOptions{}); code != ExitInvalid || !strings.Contains(errOut, "no input") {
		t.Errorf("no input: exit %d %s", code, errOut)
	}
	if code, _, errOut := runExpandCmd(t, []string{p}, ExpandOptions{Output: "xml"}); code != ExitInvalid || !strings.Contains(errOut, "--output") {
		t.Errorf("bad output: exit %d %s", code, errOut)
	}
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("kind: [unclosed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runExpandCmd(t, []string{broken}, ExpandOptions{}); code != ExitInvalid || !strings.Contains(errOut, "broken.yaml") {
		t.Errorf("malformed YAML: exit %d %s", code, errOut)
	}
}
