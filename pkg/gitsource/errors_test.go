package gitsource

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/gitserver"
	"github.com/bouncer-policy/bouncer/pkg/certs"
)

// closedPortURL is an http URL on a loopback port nothing listens on.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + "/policies.git"
}

// tlsUpstream serves a repository over HTTPS with a certificate of a
// fresh CA, and returns the CA's bundle.
func tlsUpstream(t *testing.T) (*upstream, []byte) {
	t.Helper()
	ca, err := certs.NewCA("gitsource-test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := &gitserver.Server{Root: t.TempDir(), Token: "s3cret", TLS: cert}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	return newUpstream(t, srv, "policies"), ca.CertPEM
}

func TestFetchErrorKinds(t *testing.T) {
	u := newUpstream(t, nil, "policies")
	u.commit(t, false, map[string]string{"a.yaml": "a: 1\n"})
	empty := newUpstream(t, u.srv, "empty")
	forbidden := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "this token may not read policies", http.StatusForbidden)
	}))
	defer forbidden.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream overloaded", http.StatusServiceUnavailable)
	}))
	defer broken.Close()
	tlsU, _ := tlsUpstream(t)
	tlsU.commit(t, false, map[string]string{"a.yaml": "a: 1\n"})

	with := func(f func(*Spec)) Spec { s := u.spec; f(&s); return s }
	for _, c := range []struct {
		name string
		spec Spec
		kind Kind
		want []string // in the message
	}{
		{"no token", with(func(s *Spec) { s.Auth, s.Token = AuthNone, "" }), KindAuth, []string{u.spec.Repo, `branch "main"`, "authentication required"}},
		{"wrong token", with(func(s *Spec) { s.Token = "wrong" }), KindAuth, []string{u.spec.Repo, "refused the credentials"}},
		{"forbidden", Spec{Repo: forbidden.URL + "/policies.git"}, KindForbidden, []string{forbidden.URL, "may not read"}},
		{"missing repository", with(func(s *Spec) { s.Repo = u.srv.URL("nope") }), KindNotFound, []string{u.srv.URL("nope"), "does not exist"}},
		{"missing branch", with(func(s *Spec) { s.Branch = "no-such-branch" }), KindRefNotFound, []string{`branch "no-such-branch"`, "no such ref"}},
		{"missing revision", with(func(s *Spec) { s.Revision = "no-such-tag" }), KindRefNotFound, []string{`revision "no-such-tag"`, "neither a tag nor a commit"}},
		{"empty repository", empty.spec, KindRefNotFound, []string{empty.spec.Repo, "empty"}},
		{"closed port", Spec{Repo: closedPortURL(t)}, KindUnreachable, []string{"cannot reach", "connection refused"}},
		{"server error", Spec{Repo: broken.URL + "/policies.git"}, KindOther, []string{broken.URL, "503"}},
		{"untrusted certificate", tlsU.spec, KindTLS, []string{tlsU.spec.Repo, "certificate", "not trusted"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := (&Fetcher{CacheDir: t.TempDir()}).Fetch(context.Background(), c.spec)
			t.Log(err)
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is no *FetchError", err, err)
			}
			if fe.Kind != c.kind || KindOf(err) != c.kind {
				t.Fatalf("kind %s, want %s: %v", fe.Kind, c.kind, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestFetchErrorHidesThePassword(t *testing.T) {
	u := newUpstream(t, nil, "policies")
	u.commit(t, false, map[string]string{"a.yaml": "a: 1\n"})
	s := Spec{Repo: strings.Replace(u.spec.Repo, "://", "://git:s3cret@", 1), Branch: "no-such-branch"}
	_, err := (&Fetcher{CacheDir: t.TempDir()}).Fetch(context.Background(), s)
	if KindOf(err) != KindRefNotFound {
		t.Fatalf("kind %s, want %s: %v", KindOf(err), KindRefNotFound, err)
	}
	if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "git:xxxxx@") {
		t.Fatalf("message %q shows the password or no masked URL", err)
	}
}

func TestFetchOverHTTPSWithTheCABundle(t *testing.T) {
	u, bundle := tlsUpstream(t)
	c1 := u.commit(t, false, map[string]string{"a.yaml": "a: 1\n"})
	f := &Fetcher{CacheDir: t.TempDir()}
	if _, err := f.Fetch(context.Background(), u.spec); KindOf(err) != KindTLS {
		t.Fatalf("fetch without the CA bundle: %v (kind %s), want %s", err, KindOf(err), KindTLS)
	}
	s := u.spec
	s.CABundle = bundle
	co := fetchOK(t, f, s, c1)
	sameFiles(t, co.Dir, map[string]string{"a.yaml": "a: 1\n"})
	if !strings.HasPrefix(s.Repo, "https://") {
		t.Fatalf("repository %s is not served over https", s.Repo)
	}
	// Another CA's bundle does not do.
	other, err := certs.NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.CABundle = other.CertPEM
	if _, err := (&Fetcher{CacheDir: t.TempDir()}).Fetch(context.Background(), s); KindOf(err) != KindTLS {
		t.Fatalf("fetch with another CA's bundle: %v, want kind %s", err, KindTLS)
	}
}

func TestFetchOfASilentServerTimesOut(t *testing.T) {
	// A server that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	f := &Fetcher{CacheDir: t.TempDir(), Timeout: 200 * time.Millisecond}
	_, err = f.Fetch(context.Background(), Spec{Repo: "http://" + ln.Addr().String() + "/policies.git"})
	if KindOf(err) != KindUnreachable || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Fatalf("fetch from a silent server: %v (kind %s), want kind %s naming the timeout", err, KindOf(err), KindUnreachable)
	}
}
