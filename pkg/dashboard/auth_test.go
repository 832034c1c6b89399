package dashboard

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fakeCluster answers TokenReviews from tokens (token → user) and
// SubjectAccessReviews from allowed (user → may get constrainttemplates),
// and counts the calls.
func fakeCluster(t *testing.T, tokens map[string]string, allowed map[string]bool, calls *int) *fake.Clientset {
	t.Helper()
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		*calls++
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		if tr.Spec.Token == "broken" {
			return true, nil, errors.New("apiserver unavailable")
		}
		if user, ok := tokens[tr.Spec.Token]; ok {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: user, Groups: []string{"team"}}}
		}
		return true, tr, nil
	})
	c.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		*calls++
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		ra := sar.Spec.ResourceAttributes
		if ra == nil || ra.Verb != "get" || ra.Group != "templates.gatekeeper.sh" || ra.Resource != "constrainttemplates" || sar.Spec.Groups[0] != "team" {
			t.Errorf("SubjectAccessReview asks %+v", sar.Spec)
		}
		sar.Status.Allowed = allowed[sar.Spec.User]
		return true, sar, nil
	})
	return c
}

func TestAuth(t *testing.T) {
	calls := 0
	client := fakeCluster(t, map[string]string{"good": "alice", "other": "mallory"}, map[string]bool{"alice": true}, &calls)
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	a := &Auth{Client: client, TTL: 10 * time.Second, now: func() time.Time { return now }}
	h := a.Wrap(newTestHandler(t, Static(testFleet())))
	do := func(header string) (int, string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	cases := []struct {
		header string
		code   int
		body   string
	}{
		{"", http.StatusUnauthorized, "send a Kubernetes bearer token"},
		{"Basic YWxpY2U6eA==", http.StatusUnauthorized, "send a Kubernetes bearer token"},
		{"Bearer ", http.StatusUnauthorized, "send a Kubernetes bearer token"},
		{"Bearer forged", http.StatusUnauthorized, "the token is not valid"},
		{"Bearer other", http.StatusForbidden, `user "mallory" may not get constrainttemplates.templates.gatekeeper.sh`},
		{"Bearer broken", http.StatusServiceUnavailable, "Could not check the token"},
		{"Bearer good", http.StatusOK, "staging"},
	}
	for _, c := range cases {
		code, body := do(c.header)
		if code != c.code || !strings.Contains(body, c.body) {
			t.Errorf("Authorization %q: %d %q, want %d with %q", c.header, code, body, c.code, c.body)
		}
		if code != http.StatusOK && strings.Contains(body, "staging") {
			t.Errorf("Authorization %q: refused, but the page came along", c.header)
		}
	}
	// Verdicts are cached for the TTL, then asked again.
	before := calls
	do("Bearer good")
	do("Bearer other")
	if calls != before {
		t.Errorf("%d API calls within the TTL, want none", calls-before)
	}
	now = now.Add(11 * time.Second)
	if code, _ := do("Bearer good"); code != http.StatusOK || calls != before+2 {
		t.Errorf("after the TTL: %d, %d calls (want 2)", code, calls-before)
	}
	// An apiserver error is not cached as a refusal.
	before = calls
	do("Bearer broken")
	do("Bearer broken")
	if calls != before+2 {
		t.Errorf("an error was cached: %d calls", calls-before)
	}
}

func TestListenRefusesOpenAddresses(t *testing.T) {
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "10.1.2.3:0"} {
		if lis, err := Listen(addr, false); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			if lis != nil {
				lis.Close()
			}
			t.Errorf("Listen(%q) without auth: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		lis, err := Listen(addr, false)
		if err != nil {
			t.Errorf("Listen(%q): %v", addr, err)
			continue
		}
		lis.Close()
	}
	lis, err := Listen(":0", true)
	if err != nil {
		t.Errorf("Listen(:0) with auth: %v", err)
	} else {
		lis.Close()
	}
	if _, err := Listen("nonsense", false); err == nil {
		t.Error("an address without a port is accepted")
	}
}
