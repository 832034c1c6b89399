package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/controls"
	"github.com/bouncer-policy/bouncer/pkg/library"
)

// runCmd runs a bouncer command in-process: exit code, stdout, stderr.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
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

// exportLibrary writes the whole library as `bouncer library export`
// does, sample constraints included, into a policy directory.
func exportLibrary(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "policies")
	if code, out, errs := runCmd(t, append(append([]string{"library", "export"}, args...), dir)...); code != 0 {
		t.Fatalf("library export: exit %d\n%s%s", code, out, errs)
	}
	return dir
}

// The exported library, reviewed offline: every control some library
// policy claims is enforced by that policy's sample constraint (they all
// deny everywhere but kube-system), every other control is missing, and
// the summary lines count them.
func TestControlsOverExportedLibrary(t *testing.T) {
	dir := exportLibrary(t)
	code, out, errs := runCmd(t, "controls", "-o", "json", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	var entries []controls.Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	policies, err := library.Policies()
	if err != nil {
		t.Fatal(err)
	}
	claimed := map[string][]string{} // standard/control -> constraint kinds
	for _, p := range policies {
		for _, std := range []string{"pss", "cis", "nsa", "mitre"} {
			for _, id := range strings.Split(p.Annotations["bouncer.dev/"+std], ",") {
				if id = strings.TrimSpace(id); id != "" {
					claimed[std+"/"+id] = append(claimed[std+"/"+id], p.Kind)
				}
			}
		}
	}
	// A control any constraint counts for is claimed by every policy.
	catalogue, err := controls.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	for _, std := range catalogue {
		for _, c := range std.Controls {
			if c.AnyConstraint {
				for _, p := range policies {
					claimed[std.ID+"/"+c.ID] = append(claimed[std.ID+"/"+c.ID], p.Kind)
				}
			}
		}
	}
	seen := map[string]bool{}
	enforced := map[string]int{}
	for _, e := range entries {
		seen[e.Standard] = true
		if len(e.Targets) != 1 || e.Targets[0].Name != dir {
			t.Fatalf("%s %s: targets %+v", e.Standard, e.Control, e.Targets)
		}
		r := e.Targets[0]
		kinds := claimed[e.Standard+"/"+e.Control]
		switch {
		case len(kinds) == 0 && r.Status != controls.Missing:
			t.Errorf("%s %s: no library policy claims it, but it is %s by %v", e.Standard, e.Control, r.Status, r.Constraints)
		case len(kinds) > 0 && r.Status != controls.Enforced:
			t.Errorf("%s %s: claimed by %v, but %s", e.Standard, e.Control, kinds, r.Status)
		case len(kinds) > 0:
			enforced[e.Standard]++
			for _, c := range r.Constraints {
				if !slices.Contains(kinds, strings.Split(c, "/")[0]) {
					t.Errorf("%s %s: constraint %s is of no claiming template %v", e.Standard, e.Control, c, kinds)
				}
			}
		}
	}
	for _, std := range []string{"pss", "cis", "nsa", "mitre"} {
		if !seen[std] || enforced[std] == 0 {
			t.Errorf("standard %s: seen %v, %d enforced", std, seen[std], enforced[std])
		}
	}
	code, out, _ = runCmd(t, "controls", "--standard", "pss", dir)
	if code != 0 || !strings.Contains(out, "PSS baseline 12/12 enforced\n") || !strings.Contains(out, "PSS restricted 19/19 enforced\n") || strings.Contains(out, "CIS") {
		t.Errorf("table, --standard pss: exit %d\n%s", code, out)
	}
}

// Softening or scoping the exported constraints changes the statuses the
// way a reviewer would expect, in every output format.
func TestControlsStatusesAndFormats(t *testing.T) {
	dir := exportLibrary(t, "--bundle", "pss-baseline")
	edit := func(policy, from, to string) {
		t.Helper()
		p := filepath.Join(dir, policy, "constraint.yaml")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), from) {
			t.Fatalf("%s lacks %q:\n%s", p, from, b)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(b), from, to, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit("pss-baseline-privileged", "spec:\n", "spec:\n  enforcementAction: warn\n")
	edit("pss-baseline-host-ports", "  match:\n", "  match:\n    excludedNamespaces: [kube-system, legacy]\n")
	if err := os.RemoveAll(filepath.Join(dir, "pss-baseline-sysctls")); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "controls", "--standard", "pss", "-o", "csv", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"pss,baseline/privileged,Privileged pods are disallowed," + dir + ",monitored,K8sPSSBaselinePrivileged/",
		",baseline/host-ports,",
		"," + dir + ",partial,K8sPSSBaselineHostPorts/",
		"pss,baseline/sysctls,Only the safe sysctls are allowed," + dir + ",missing,\n",
		"pss,restricted/privilege-escalation,Privilege escalation must be disallowed," + dir + ",missing,\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("csv lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCmd(t, "controls", "--standard", "cis", "-o", "markdown", dir)
	if code != 0 || !regexpMatch(out, "\\| 5\\.2\\.1 \\| Ensure that the cluster has at least one active policy control mechanism in place \\| enforced \\(`[^`]+`, `[^`]+`, `[^`]+` and 6 more\\) \\|") {
		t.Errorf("markdown 5.2.1 (exit %d) does not name 3 of the 9 deny constraints covering every namespace (12 baseline policies less sysctls removed, privileged warning, host-ports scoped):\n%s", code, out)
	}
	code, out, _ = runCmd(t, "controls", "--standard", "pss", "-o", "markdown", dir)
	for _, want := range []string{"## PSS v1.37\n", "- PSS baseline 9/12 enforced\n", "- PSS restricted 9/19 enforced\n", "| baseline/privileged | Privileged pods are disallowed | monitored (`K8sPSSBaselinePrivileged/"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("markdown (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
}

func TestControlsTeamCatalogue(t *testing.T) {
	dir := exportLibrary(t, "--bundle", "everyday")
	cat := filepath.Join(t.TempDir(), "acme.yaml")
	if err := os.WriteFile(cat, []byte("standard: acme\nname: ACME\nedition: \"2026.1\"\ncontrols:\n- {id: ACME-1, title: Containers drop NET_RAW}\n- {id: ACME-2, title: Images are signed}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(dir, "drop-net-raw", "template.yaml")
	b, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmpl, []byte(strings.Replace(string(b), "  annotations:\n", "  annotations:\n    bouncer.dev/acme: ACME-1\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "controls", "--catalogue", cat, "--standard", "acme", dir)
	if code != 0 || !strings.Contains(out, "ACME 1/2 enforced") || !regexpMatch(out, `acme\s+ACME-1\s+enforced`) || !regexpMatch(out, `acme\s+ACME-2\s+missing`) {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
}

func TestControlsBadInput(t *testing.T) {
	dir := t.TempDir()
	for name, args := range map[string][]string{
		"unknown standard":  {"controls", "--standard", "nist", dir},
		"unknown output":    {"controls", "-o", "yaml", dir},
		"csv for a drill":   {"controls", "--cve", "CVE-2020-14386", "-o", "csv", dir},
		"not a CVE":         {"controls", "--cve", "net-raw", dir},
		"missing dir":       {"controls", filepath.Join(dir, "none")},
		"missing catalogue": {"controls", "--catalogue", filepath.Join(dir, "none.yaml"), dir},
		"missing context":   {"controls", "--kubeconfig", writeKubeconfig(t), "--context", "nope"},
	} {
		code, out, errs := runCmd(t, args...)
		if code != 2 || !strings.Contains(errs, "error: ") {
			t.Errorf("%s: exit %d, want 2\n%s%s", name, code, out, errs)
		}
	}
}

// The drill offline: an empty policy directory is exposed and the output
// names the commands that close it; running them closes it.
func TestControlsCVEDrillOffline(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "controls", "--cve", "CVE-2020-14386", dir)
	cmdLine := "bouncer library export --policy drop-net-raw " + dir
	if code != 1 || !regexpMatch(out, dir+`\s+exposed`) || !strings.Contains(out, cmdLine+"\n") {
		t.Fatalf("exposed: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := runCmd(t, strings.Fields(strings.TrimPrefix(cmdLine, "bouncer "))...); code != 0 {
		t.Fatalf("%s: exit %d\n%s%s", cmdLine, code, out, errs)
	}
	code, out, errs = runCmd(t, "controls", "--cve", "cve-2020-14386", "-o", "json", dir)
	var rep struct {
		CVE     string `json:"cve"`
		Targets []struct {
			Name        string   `json:"name"`
			Status      string   `json:"status"`
			Protected   bool     `json:"protected"`
			Constraints []string `json:"constraints"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s%s", err, out, errs)
	}
	if code != 0 || rep.CVE != "CVE-2020-14386" || len(rep.Targets) != 1 || rep.Targets[0].Status != "protected" || !rep.Targets[0].Protected ||
		!slices.Equal(rep.Targets[0].Constraints, []string{"K8sRequireDropNetRaw/drop-net-raw"}) {
		t.Errorf("protected: exit %d, %+v", code, rep)
	}
}

func writeKubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: a, context: {cluster: c, user: u}}]
current-context: a
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func regexpMatch(s, pattern string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// A policy directory that holds drop-net-raw, but only warning, is exposed;
// the drill says why and does not offer to export over it.
func TestControlsCVEDrillWarnOnly(t *testing.T) {
	dir := exportLibrary(t, "--policy", "drop-net-raw")
	p := filepath.Join(dir, "drop-net-raw", "constraint.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), "spec:\n", "spec:\n  enforcementAction: warn\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "controls", "--cve", "CVE-2020-14386", dir)
	if code != 1 || !regexpMatch(out, regexp.QuoteMeta(dir)+`\s+exposed \(monitored\)\s+K8sRequireDropNetRaw/drop-net-raw`) ||
		!strings.Contains(out, "K8sRequireDropNetRaw/drop-net-raw only warns or runs dry, which does not count") ||
		strings.Contains(out, "export --policy drop-net-raw") || !strings.Contains(out, "export --policy pss-restricted-capabilities "+dir) {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
}
