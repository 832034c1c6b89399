package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/bouncer-policy/bouncer/pkg/report"
)

// TestVerifyAdmissionReviews runs AdmissionReview cases of both API versions
// with and without request.kind, name and namespace. gator verify matches
// such requests by their objects' own kind, name and namespace, so each
// changed label is one violation, and the Pod in namespace dev (which the
// constraint does not select) none.
func TestVerifyAdmissionReviews(t *testing.T) {
	r := runVerifyCmd(t, []string{"testdata/suite/reviews"}, VerifyOptions{Verbose: true})
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, v := range []string{"v1", "v1beta1"} {
		for _, c := range []string{"complete-changed", "no-kind-changed", "no-name-namespace-changed", "bare-changed", "bare-unchanged", "bare-other-namespace", "bare-delete"} {
			if w := "ok   admission-reviews/immutable-team/" + v + "-" + c + "\n"; !strings.Contains(r.stdout, w) {
				t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
			}
		}
	}
	if !strings.Contains(r.stdout, "14 cases: 14 passed, 0 failed") {
		t.Errorf("summary:\n%s", r.stdout)
	}
}

// TestVerifyAdmissionReviewsRefused: a review without a request, one with
// neither object nor oldObject and one with a misspelt field fail with
// gator's reasons.
func TestVerifyAdmissionReviewsRefused(t *testing.T) {
	r := runVerifyCmd(t, []string{"testdata/suite/reviews-bad"}, VerifyOptions{})
	if r.code != ExitDenied {
		t.Fatalf("exit %d, want %d\n%s%s", r.code, ExitDenied, r.stdout, r.stderr)
	}
	for _, w := range []string{
		"FAIL admission-reviews-refused/refused/no-request: testdata/suite/reviews-bad/no-request.yaml:1: missing an AdmissionRequest object",
		`FAIL admission-reviews-refused/refused/no-object: testdata/suite/reviews-bad/no-object.yaml:1: no object or oldObject found to review: AdmissionRequest does not contain an "object" or "oldObject" to review`,
		`FAIL admission-reviews-refused/refused/unknown-field: testdata/suite/reviews-bad/unknown-field.yaml:1: not an AdmissionReview object: unable to convert to an AdmissionReview object, error: strict decoding error: unknown field "request.objcet"`,
		"3 cases: 0 passed, 3 failed",
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
		}
	}
}

// TestLoneBrokenTemplate: a broken template is the error to report even
// when no constraint was given.
func TestLoneBrokenTemplate(t *testing.T) {
	dir := t.TempDir()
	tpl := filepath.Join(dir, "broken-template.yaml")
	src, err := os.ReadFile("testdata/bad/badrego.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Only the template, not the constraint after it.
	if err := os.WriteFile(tpl, []byte(strings.SplitN(string(src), "\n---\n", 2)[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runTestCmd(t, []string{"testdata/pods.yaml"}, TestOptions{Policies: []string{tpl}})
	if r.code != ExitInvalid {
		t.Errorf("exit %d, want %d", r.code, ExitInvalid)
	}
	if want := tpl + `:1: template "k8sbroken": compiling rego: k8sbroken.rego:3:3: rego_unsafe_var_error: var undefined_thing is unsafe`; !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "no constraints found") {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
}

// TestJUnitCarriesVAPs: a native ValidatingAdmissionPolicy's denial is a
// failed testcase, as it is a finding in every other format.
func TestJUnitCarriesVAPs(t *testing.T) {
	vapDir := "../../examples/vap-require-labels"
	r := runTestCmd(t, []string{filepath.Join(vapDir, "samples", "pod-bad-team.yaml")}, TestOptions{
		Policies: []string{filepath.Join(vapDir, "policy.yaml"), filepath.Join(vapDir, "binding.yaml")},
		Output:   "junit",
	})
	if r.code != ExitDenied {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Tests != 1 || doc.Failures != 1 || !strings.Contains(r.stdout, "Pod shop/worker × ValidatingAdmissionPolicy/require-labels") {
		t.Errorf("tests=%d failures=%d, want 1 and 1:\n%s", doc.Tests, doc.Failures, r.stdout)
	}
}

// TestGenerateVAPRefusesBrokenCEL: a template whose CEL does not compile
// yields no policy, and the error names the template, its file and line.
func TestGenerateVAPRefusesBrokenCEL(t *testing.T) {
	tpl := `apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sbadcel
spec:
  crd:
    spec:
      names:
        kind: K8sBadCEL
  targets:
    - target: admission.k8s.gatekeeper.sh
      code:
        - engine: K8sNativeValidation
          source:
            validations:
              - expression: "object.metadata.name == ("
                message: broken
`
	var out bytes.Buffer
	err := GenerateVAP([]string{"-"}, strings.NewReader("---\n"+tpl), &out)
	if err == nil || !strings.Contains(err.Error(), `<stdin>:2: template "k8sbadcel": code[engine=K8sNativeValidation].source.validations[0].expression: 1:26: Syntax error`) {
		t.Errorf("error %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("a policy was written:\n%s", out.String())
	}
}

// TestTimeoutMustBePositive: a zero or negative --timeout is refused
// instead of failing every review or standing for 5s.
func TestTimeoutMustBePositive(t *testing.T) {
	for _, d := range []time.Duration{-time.Second, 0} {
		var out, errb bytes.Buffer
		code := RunTest(context.Background(), []string{"testdata/pods.yaml"}, TestOptions{Policies: []string{policies}, Timeout: d, Stdout: &out, Stderr: &errb})
		if code != ExitInvalid || !strings.Contains(errb.String(), "--timeout: "+d.String()+" is not a positive duration") {
			t.Errorf("test --timeout %v: exit %d, stderr %q", d, code, errb.String())
		}
		errb.Reset()
		code = RunVerify(context.Background(), []string{"testdata/suite/good"}, VerifyOptions{Timeout: d, Stdout: &out, Stderr: &errb})
		if code != ExitInvalid || !strings.Contains(errb.String(), "--timeout") {
			t.Errorf("verify --timeout %v: exit %d, stderr %q", d, code, errb.String())
		}
	}
}

// outcome is one (object, policy, outcome) finding of a report.
type outcome struct{ object, policy, outcome string }

func mixedRun(t *testing.T, output string, paths ...string) result {
	t.Helper()
	v := "../../examples/vap-require-labels"
	if len(paths) == 0 {
		paths = []string{"testdata/pods.yaml", "testdata/soft.yaml", filepath.Join(v, "samples", "pod-bad-team.yaml")}
	}
	return runTestCmd(t, paths, TestOptions{
		Policies: []string{policies, "testdata/mixed", filepath.Join(v, "policy.yaml"), filepath.Join(v, "binding.yaml"), filepath.Join(v, "binding-warn.yaml")},
		Output:   output,
	})
}

func outcomesOf(t *testing.T, format, out string) (map[outcome]bool, bool) {
	t.Helper()
	got := map[outcome]bool{}
	switch format {
	case "json", "yaml":
		var doc report.Document
		var err error
		if format == "json" {
			err = json.Unmarshal([]byte(out), &doc)
		} else {
			err = yaml.UnmarshalStrict([]byte(out), &doc)
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, out)
		}
		for _, o := range doc.Results {
			for _, v := range o.Violations {
				got[outcome{o.ID(), v.ConstraintKind + "/" + v.ConstraintName, v.EnforcementAction}] = true
			}
			for _, e := range o.Errors {
				got[outcome{o.ID(), e.ConstraintKind + "/" + e.ConstraintName, "error"}] = true
			}
		}
		return got, doc.Summary.Incomplete
	case "sarif":
		var log struct {
			Runs []struct {
				Invocations []struct {
					ExecutionSuccessful bool `json:"executionSuccessful"`
				} `json:"invocations"`
				Results []struct {
					RuleID     string            `json:"ruleId"`
					Properties map[string]string `json:"properties"`
				} `json:"results"`
			} `json:"runs"`
		}
		if err := json.Unmarshal([]byte(out), &log); err != nil {
			t.Fatalf("sarif: %v\n%s", err, out)
		}
		for _, r := range log.Runs[0].Results {
			got[outcome{r.Properties["object"], r.RuleID, r.Properties["outcome"]}] = true
		}
		return got, !log.Runs[0].Invocations[0].ExecutionSuccessful
	case "junit":
		var doc struct {
			Suites []struct {
				Name  string `xml:"name,attr"`
				Cases []struct {
					Name      string    `xml:"name,attr"`
					Failure   *struct{} `xml:"failure"`
					Error     *struct{} `xml:"error"`
					SystemOut string    `xml:"system-out"`
				} `xml:"testcase"`
			} `xml:"testsuite"`
		}
		if err := xml.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("junit: %v\n%s", err, out)
		}
		incomplete := false
		for _, s := range doc.Suites {
			for _, c := range s.Cases {
				if s.Name == "bouncer" {
					incomplete = incomplete || c.Error != nil
					continue
				}
				obj, policy, _ := strings.Cut(c.Name, " × ")
				switch {
				case c.Error != nil:
					got[outcome{obj, policy, "error"}] = true
				case c.Failure != nil:
					got[outcome{obj, policy, "deny"}] = true
				}
				for _, line := range strings.Split(c.SystemOut, "\n") {
					if action, _, ok := strings.Cut(line, ": "); ok && (action == "warn" || action == "dryrun") {
						got[outcome{obj, policy, action}] = true
					}
				}
			}
		}
		return got, incomplete
	}
	t.Fatalf("format %s", format)
	return nil, false
}

// TestEveryFormatCarriesEveryOutcome: on one input mixing Gatekeeper
// constraints (deny, warn, dryrun, and one that cannot be evaluated) and
// native ValidatingAdmissionPolicies (Deny and Warn bindings), JSON, YAML,
// SARIF and JUnit report the same (object, policy, outcome) set.
func TestEveryFormatCarriesEveryOutcome(t *testing.T) {
	const vapDeny, vapWarn = "ValidatingAdmissionPolicy/require-labels-workloads", "ValidatingAdmissionPolicy/require-labels-warn"
	want := map[outcome]bool{
		{"Pod shop/pinned", vapDeny, "deny"}:                       true,
		{"Pod shop/pinned", vapWarn, "warn"}:                       true,
		{"Pod shop/latest", "K8sDisallowedTags/no-latest", "deny"}: true,
		{"Pod shop/latest", vapDeny, "deny"}:                       true,
		{"Pod shop/latest", vapWarn, "warn"}:                       true,
		{"Pod shop/edgy", "K8sDisallowedTags/no-edge", "warn"}:     true,
		{"Pod shop/edgy", "K8sDisallowedTags/no-canary", "dryrun"}: true,
		{"Pod shop/edgy", "K8sConflict/conflicted", "error"}:       true,
		{"Pod shop/edgy", vapDeny, "deny"}:                         true,
		{"Pod shop/edgy", vapWarn, "warn"}:                         true,
		{"Pod shop/worker", vapDeny, "deny"}:                       true,
		{"Pod shop/worker", vapWarn, "warn"}:                       true,
	}
	for _, format := range []string{"json", "yaml", "sarif", "junit"} {
		r := mixedRun(t, format)
		if r.code != ExitDenied {
			t.Errorf("%s: exit %d\n%s", format, r.code, r.stderr)
		}
		got, incomplete := outcomesOf(t, format, r.stdout)
		if incomplete {
			t.Errorf("%s: a complete run is marked incomplete", format)
		}
		for o := range want {
			if !got[o] {
				t.Errorf("%s lacks %v", format, o)
			}
		}
		for o := range got {
			if !want[o] {
				t.Errorf("%s has the unexpected %v", format, o)
			}
		}
	}
}

// TestFailedRunWritesWellFormedReports: an input error in the middle of
// the objects still leaves a parseable document in every format, with the
// findings before it and a mark that the run is incomplete.
func TestFailedRunWritesWellFormedReports(t *testing.T) {
	for _, format := range []string{"json", "yaml", "sarif", "junit"} {
		r := mixedRun(t, format, "testdata/pods.yaml", "testdata/bad/malformed.yaml")
		if r.code != ExitInvalid || !strings.Contains(r.stderr, "testdata/bad/malformed.yaml:6:") {
			t.Errorf("%s: exit %d, stderr %q", format, r.code, r.stderr)
		}
		got, incomplete := outcomesOf(t, format, r.stdout)
		if !incomplete {
			t.Errorf("%s: the report does not say it is incomplete:\n%s", format, r.stdout)
		}
		if !got[outcome{"Pod shop/latest", "K8sDisallowedTags/no-latest", "deny"}] {
			t.Errorf("%s: the findings before the error are lost: %v", format, got)
		}
	}
}
