package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type result struct {
	code           int
	stdout, stderr string
}

func runTestCmd(t *testing.T, paths []string, o TestOptions) result {
	t.Helper()
	var out, errb bytes.Buffer
	o.Stdout, o.Stderr = &out, &errb
	if o.Stdin == nil {
		o.Stdin = strings.NewReader("")
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	code := RunTest(context.Background(), paths, o)
	return result{code, out.String(), errb.String()}
}

const policies = "testdata/policies"

func TestRunTestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		paths []string
		code  int
		want  []string
	}{
		{"deny fails", []string{"testdata/pods.yaml"}, ExitDenied, []string{
			"testdata/pods.yaml:11: Pod shop/latest: [K8sDisallowedTags/no-latest] container <app> uses a disallowed tag <nginx:latest>",
			"2 objects reviewed against 3 constraints: 1 violations (1 deny, 0 warn, 0 dryrun) in 1 denied objects, 0 errors",
		}},
		{"warn and dryrun never fail", []string{"testdata/soft.yaml"}, ExitOK, []string{
			"testdata/soft.yaml:1: Pod shop/edgy: [K8sDisallowedTags/no-canary] (dryrun) container <sidecar> uses a disallowed tag <envoy:canary>",
			"testdata/soft.yaml:1: Pod shop/edgy: [K8sDisallowedTags/no-edge] (warn) container <app> uses a disallowed tag <nginx:edge>",
			"1 objects reviewed against 3 constraints: 2 violations (0 deny, 1 warn, 1 dryrun) in 0 denied objects, 0 errors",
		}},
		// Objects of unknown kinds are reviewed like any other (no
		// constraint matches Widget here) without crashing.
		{"compliant and unknown kinds", []string{"testdata/compliant.yaml"}, ExitOK, []string{
			"2 objects reviewed against 3 constraints: 0 violations",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runTestCmd(t, tc.paths, TestOptions{Policies: []string{policies}})
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks line %q:\n%s", w, r.stdout)
				}
			}
			if r.stderr != "" {
				t.Errorf("stderr: %s", r.stderr)
			}
		})
	}
}

// TestPoliciesInStream: templates and constraints may sit in the same
// files (or stdin) as the objects.
func TestPoliciesInStream(t *testing.T) {
	r := runTestCmd(t, []string{policies, "testdata/pods.yaml"}, TestOptions{})
	if r.code != ExitDenied || !strings.Contains(r.stdout, "Pod shop/latest: [K8sDisallowedTags/no-latest]") {
		t.Errorf("same stream: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "2 objects reviewed against 3 constraints") {
		t.Errorf("policies must not be reviewed as objects:\n%s", r.stdout)
	}

	var stream bytes.Buffer
	for _, f := range []string{"testdata/policies/template.yaml", "testdata/policies/constraints.yaml", "testdata/pods.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		stream.Write(b)
		stream.WriteString("\n---\n")
	}
	r = runTestCmd(t, []string{"-"}, TestOptions{Stdin: &stream})
	if r.code != ExitDenied || !strings.Contains(r.stdout, "<stdin>:") || !strings.Contains(r.stdout, "Pod shop/latest: [K8sDisallowedTags/no-latest]") {
		t.Errorf("stdin with policies: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestStdinObjects(t *testing.T) {
	b, err := os.ReadFile("testdata/pods.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := runTestCmd(t, []string{"-"}, TestOptions{Policies: []string{policies}, Stdin: bytes.NewReader(b)})
	if r.code != ExitDenied || !strings.Contains(r.stdout, "<stdin>:11: Pod shop/latest:") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestOutputFormats(t *testing.T) {
	for _, format := range []string{"human", "json", "yaml", "sarif", "junit"} {
		t.Run(format, func(t *testing.T) {
			r := runTestCmd(t, []string{"testdata/pods.yaml", "testdata/soft.yaml"}, TestOptions{Policies: []string{policies}, Output: format})
			if r.code != ExitDenied {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			switch format {
			case "json":
				var doc struct {
					Results []struct{ Name string }
					Summary struct{ Objects, Deny, Warn, DryRun int }
				}
				if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
					t.Fatal(err)
				}
				if doc.Summary.Objects != 3 || doc.Summary.Deny != 1 || doc.Summary.Warn != 1 || doc.Summary.DryRun != 1 || len(doc.Results) != 2 {
					t.Errorf("json %+v", doc)
				}
			case "yaml":
				if !strings.Contains(r.stdout, "summary:\n") || !strings.Contains(r.stdout, "name: latest\n") {
					t.Errorf("yaml:\n%s", r.stdout)
				}
			case "sarif":
				var log struct {
					Version string
					Runs    []struct{ Results []struct{ RuleID string } }
				}
				if err := json.Unmarshal([]byte(r.stdout), &log); err != nil || log.Version != "2.1.0" || len(log.Runs[0].Results) != 3 {
					t.Errorf("sarif %+v %v", log, err)
				}
			case "junit":
				var doc struct {
					Tests    int `xml:"tests,attr"`
					Failures int `xml:"failures,attr"`
				}
				if err := xml.Unmarshal([]byte(r.stdout), &doc); err != nil {
					t.Fatal(err)
				}
				// 3 Pods × 3 matching constraints; one deny.
				if doc.Tests != 9 || doc.Failures != 1 {
					t.Errorf("junit tests=%d failures=%d, want 9 and 1", doc.Tests, doc.Failures)
				}
			case "human":
				if !strings.Contains(r.stdout, "3 objects reviewed") {
					t.Errorf("human:\n%s", r.stdout)
				}
			}
		})
	}
	r := runTestCmd(t, []string{"testdata/pods.yaml"}, TestOptions{Policies: []string{policies}, Output: "html"})
	if r.code != ExitInvalid || !strings.Contains(r.stderr, "html") {
		t.Errorf("unknown format: exit %d %s", r.code, r.stderr)
	}
}

// TestBadInputs: every bad input is one clear error line, exit 2, no panic.
func TestBadInputs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		paths    []string
		policies []string
		want     []string
	}{
		{"malformed YAML", []string{"testdata/bad/malformed.yaml"}, []string{policies}, []string{"testdata/bad/malformed.yaml:6:", "malformed document 2", "line 10"}},
		{"not an object", []string{"testdata/bad/notobject.yaml"}, []string{policies}, []string{"testdata/bad/notobject.yaml:6:", "is a list, not an object"}},
		{"not a Kubernetes object", []string{"testdata/bad/noname.yaml"}, []string{policies}, []string{"testdata/bad/noname.yaml:1:", "missing metadata.name"}},
		{"rego does not compile", []string{"testdata/pods.yaml"}, []string{"testdata/bad/badrego.yaml"}, []string{"testdata/bad/badrego.yaml:1:", `template "k8sbroken"`, "k8sbroken.rego:3:"}},
		{"constraint without template", []string{"testdata/pods.yaml"}, []string{"testdata/bad/orphan.yaml"}, []string{"testdata/bad/orphan.yaml:1:", "K8sNobody/orphan", "k8snobody"}},
		{"parameters break the schema", []string{"testdata/pods.yaml"}, []string{"testdata/policies/template.yaml", "testdata/bad/badparams.yaml"}, []string{"testdata/bad/badparams.yaml:1:", "K8sDisallowedTags/bad-params", "spec.parameters.tags"}},
		{"no constraints", []string{"testdata/pods.yaml"}, []string{"testdata/policies/template.yaml"}, []string{"no constraints found"}},
		{"missing file", []string{"testdata/nope.yaml"}, []string{policies}, []string{"testdata/nope.yaml"}},
		{"no input", nil, []string{policies}, []string{"no input"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runTestCmd(t, tc.paths, TestOptions{Policies: tc.policies})
			if r.code != ExitInvalid {
				t.Errorf("exit %d, want %d\n%s%s", r.code, ExitInvalid, r.stdout, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "error: ") {
				t.Errorf("stderr %q: want an error line", r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q lacks %q", r.stderr, w)
				}
			}
		})
	}
}

// TestSlowRule: a rule that loops for long hits --timeout and gives one
// error line naming the file and the object, and a failing exit code.
func TestSlowRule(t *testing.T) {
	r := runTestCmd(t, []string{"testdata/pods.yaml"}, TestOptions{Policies: []string{"testdata/bad/slow.yaml"}, Timeout: 200 * time.Millisecond})
	if r.code != ExitDenied {
		t.Errorf("exit %d, want %d\n%s%s", r.code, ExitDenied, r.stdout, r.stderr)
	}
	var errLines []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, ": error: ") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 2 {
		t.Fatalf("want one error line per Pod, got:\n%s", r.stdout)
	}
	if !strings.HasPrefix(errLines[0], "testdata/pods.yaml:1: Pod shop/pinned: error: evaluating constraint K8sSlow/slow") || !strings.Contains(errLines[0], "deadline") {
		t.Errorf("error line %q: want file:line, object, constraint and deadline", errLines[0])
	}
	if !strings.Contains(r.stdout, "2 errors") {
		t.Errorf("summary must count the errors:\n%s", r.stdout)
	}
}

func TestEngineFlag(t *testing.T) {
	for in, want := range map[string]string{"": "", "auto": "", "rego": "Rego", "CEL": "K8sNativeValidation", "k8snativevalidation": "K8sNativeValidation"} {
		if got, err := EngineFlag(in); err != nil || got != want {
			t.Errorf("EngineFlag(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := EngineFlag("lua"); err == nil {
		t.Error("EngineFlag(lua): want an error")
	}
	r := runTestCmd(t, []string{"testdata/pods.yaml"}, TestOptions{Policies: []string{policies}, Engine: "lua"})
	if r.code != ExitInvalid {
		t.Errorf("--engine lua: exit %d", r.code)
	}
}

func runVerifyCmd(t *testing.T, paths []string, o VerifyOptions) result {
	t.Helper()
	var out, errb bytes.Buffer
	o.Stdout, o.Stderr = &out, &errb
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	code := RunVerify(context.Background(), paths, o)
	return result{code, out.String(), errb.String()}
}

func TestVerifyExamples(t *testing.T) {
	r := runVerifyCmd(t, []string{filepath.Join("..", "..", "examples") + "/..."}, VerifyOptions{})
	if r.code != ExitOK || !strings.HasPrefix(r.stdout, "PASS: ") {
		t.Errorf("examples: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestVerifyGood(t *testing.T) {
	r := runVerifyCmd(t, []string{"testdata/suite/good"}, VerifyOptions{Verbose: true})
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, w := range []string{
		"ok   cli-good/tags/latest-denied",
		"ok   cli-good/tags/update-review-denied",
		"ok   cli-good/tags/delete-review-allowed",
		"SKIP cli-good/tags/skipped-case",
		"ok   cli-good/broken-template-invalid (invalid as expected: ",
		"SKIP cli-good/skipped-test",
		"ok   cli-good/inventory/frozen-namespace",
		"ok   cli-good/inventory/no-inventory",
		// 5 + 1 + 2 + 2 cases; skipped: 1 case and the 2 of the skipped test.
		"PASS: 1 suites, 4 tests, 10 cases: 7 passed, 0 failed, 3 skipped",
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
		}
	}
}

func TestVerifyBroken(t *testing.T) {
	r := runVerifyCmd(t, []string{"testdata/suite/broken"}, VerifyOptions{})
	if r.code != ExitDenied {
		t.Fatalf("exit %d, want %d\n%s%s", r.code, ExitDenied, r.stdout, r.stderr)
	}
	for _, w := range []string{
		"FAIL cli-broken/wrong/wrong-count: assertion 1: got 1 violations, want exactly 2",
		`FAIL cli-broken/wrong/wrong-message: assertion 1: got no violations matching "no such message", want at least 1`,
		"SKIP suite cli-skipped-suite",
		"FAIL: 2 suites, 1 tests, 3 cases: 1 passed, 2 failed, 0 skipped",
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "ok   ") {
		t.Errorf("passing cases are printed only with -v:\n%s", r.stdout)
	}
}

func TestVerifyFailuresCarryTheSuite(t *testing.T) {
	var out bytes.Buffer
	sum, err := Verify(context.Background(), []string{"testdata/suite/broken"}, VerifyOptions{Stdout: &out, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range sum.Failures {
		got = append(got, fmt.Sprintf("%s:%d %s", f.File, f.Line, f.Case))
	}
	want := []string{
		"testdata/suite/broken/suite.yaml:1 cli-broken/wrong/wrong-count",
		"testdata/suite/broken/suite.yaml:1 cli-broken/wrong/wrong-message",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || sum.Failed != len(want) {
		t.Errorf("failures %q (failed %d), want %q", got, sum.Failed, want)
	}
}

func TestVerifyRunFilter(t *testing.T) {
	r := runVerifyCmd(t, []string{"testdata/suite/broken/suite.yaml"}, VerifyOptions{Run: "^right$", Verbose: true})
	if r.code != ExitOK || !strings.Contains(r.stdout, "ok   cli-broken/wrong/right") || !strings.Contains(r.stdout, "1 cases: 1 passed, 0 failed") {
		t.Errorf("--run right: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runVerifyCmd(t, []string{"testdata/suite/good"}, VerifyOptions{Run: "inventory"})
	if r.code != ExitOK || !strings.Contains(r.stdout, "2 cases: 2 passed") {
		t.Errorf("--run inventory: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runVerifyCmd(t, []string{"testdata/suite/good"}, VerifyOptions{Run: "("})
	if r.code != ExitInvalid || !strings.Contains(r.stderr, "--run") {
		t.Errorf("bad --run: exit %d %s", r.code, r.stderr)
	}
}

func TestVerifyNoSuite(t *testing.T) {
	r := runVerifyCmd(t, []string{"testdata/policies"}, VerifyOptions{})
	if r.code != ExitInvalid || !strings.Contains(r.stderr, "no Suite") {
		t.Errorf("exit %d %s", r.code, r.stderr)
	}
	r = runVerifyCmd(t, []string{"testdata/nope"}, VerifyOptions{})
	if r.code != ExitInvalid {
		t.Errorf("missing path: exit %d", r.code)
	}
}
