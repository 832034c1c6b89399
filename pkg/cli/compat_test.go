package cli

import (
	"bytes"
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
