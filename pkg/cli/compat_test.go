package cli

import (
	"strings"
	"testing"
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
