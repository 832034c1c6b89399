package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/library"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

func TestLibraryListTableAndFilters(t *testing.T) {
	var out bytes.Buffer
	if err := LibraryList(LibraryListOptions{Filter: library.Filter{Bundle: "everyday"}, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !strings.HasPrefix(lines[0], "NAME") {
		t.Errorf("no header: %q", lines[0])
	}
	if !strings.Contains(out.String(), "drop-net-raw") || !strings.Contains(out.String(), "CVE-2020-14386") {
		t.Errorf("everyday list lacks drop-net-raw and its CVE:\n%s", out.String())
	}
	if strings.Contains(out.String(), "pss-") {
		t.Errorf("everyday list shows PSS policies:\n%s", out.String())
	}

	out.Reset()
	if err := LibraryList(LibraryListOptions{Filter: library.Filter{CVE: "CVE-2020-8554"}, Output: "json", Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	var got []library.Policy
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("json output: %v\n%s", err, out.String())
	}
	if len(got) != 1 || got[0].Name != "external-ips" || got[0].Kind != "K8sExternalIPs" {
		t.Errorf("--cve CVE-2020-8554 -o json: %+v", got)
	}

	out.Reset()
	if err := LibraryList(LibraryListOptions{Filter: library.Filter{Bundle: "nothing"}, Output: "json", Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("empty selection: %q", out.String())
	}
	if err := LibraryList(LibraryListOptions{Filter: library.Filter{Standard: "iso"}, Stdout: &out}); err == nil {
		t.Error("unknown standard accepted")
	}
	if err := LibraryList(LibraryListOptions{Output: "xml", Stdout: &out}); err == nil {
		t.Error("unknown output accepted")
	}
}

func TestLibraryShow(t *testing.T) {
	var out bytes.Buffer
	if err := LibraryShow("external-ips", &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# external-ips (K8sExternalIPs)", "kind: ConstraintTemplate", "name: k8sexternalips", "kind: K8sExternalIPs\nmetadata:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show output lacks %q", want)
		}
	}
	err := LibraryShow("no-such-policy", &out)
	if err == nil || !strings.Contains(err.Error(), "disallowed-tags") {
		t.Errorf("unknown policy: %v (want the list of names)", err)
	}
}

func TestLibraryExportStream(t *testing.T) {
	var out bytes.Buffer
	if err := LibraryExport(LibraryExportOptions{Filter: library.Filter{Bundle: "supply-chain"}, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	want := len(library.Filter{Bundle: "supply-chain"}.Apply(mustPolicies(t)))
	counts := map[policyset.Class]int{}
	err := load.Read("export", &out, func(d *load.Document) error {
		counts[policyset.Classify(d)]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if counts[policyset.Template] != want || counts[policyset.Constraint] != want {
		t.Errorf("got %d templates and %d constraints, want %d of each", counts[policyset.Template], counts[policyset.Constraint], want)
	}
	if counts[policyset.Expansion] != 2 {
		t.Errorf("got %d expansion templates, want 2", counts[policyset.Expansion])
	}
	if counts[policyset.Object] != 0 {
		t.Errorf("export holds %d non-policy documents", counts[policyset.Object])
	}
}

func mustPolicies(t *testing.T) []library.Policy {
	t.Helper()
	ps, err := library.Policies()
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// The exported everyday bundle loads back through bouncer test: a Pod that
// breaks its rules exits 1 and names them; the expansion templates make a
// Deployment fail the same way.
func TestLibraryExportLoadsBackThroughTest(t *testing.T) {
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	if err := LibraryExport(LibraryExportOptions{Filter: library.Filter{Bundle: "everyday"}, Dir: policies}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"drop-net-raw/template.yaml", "drop-net-raw/constraint.yaml", "expansion/expansion.yaml"} {
		if _, err := os.Stat(filepath.Join(policies, f)); err != nil {
			t.Errorf("export lacks %s", f)
		}
	}
	if _, err := os.Stat(filepath.Join(policies, "pss-baseline-privileged")); err == nil {
		t.Error("everyday export holds a PSS policy")
	}
	deployment := filepath.Join(dir, "deployment.yaml")
	if err := os.WriteFile(deployment, []byte(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:latest
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := RunTest(context.Background(), []string{deployment}, TestOptions{
		Policies: []string{policies}, Output: "human", Timeout: 10 * time.Second, Stdout: &stdout, Stderr: &stderr,
	})
	if code != ExitDenied {
		t.Fatalf("exit %d, want %d; stderr: %s\nstdout: %s", code, ExitDenied, stderr.String(), stdout.String())
	}
	for _, want := range []string{"K8sDisallowedTags", "K8sRequireDropNetRaw", "[Implied by expand-workloads] container <web> uses image <nginx:latest> with the disallowed tag <latest>"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestLibraryExportUnknownBundle(t *testing.T) {
	var out bytes.Buffer
	err := LibraryExport(LibraryExportOptions{Filter: library.Filter{Bundle: "nope"}, Stdout: &out})
	if err == nil || !strings.Contains(err.Error(), "everyday") {
		t.Errorf("unknown bundle: %v (want the list of bundles)", err)
	}
}
