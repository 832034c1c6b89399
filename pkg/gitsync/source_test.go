package gitsync

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/gitserver"
	"github.com/bouncer-policy/bouncer/pkg/certs"
	"github.com/bouncer-policy/bouncer/pkg/gitsource"
)

// servedRepo serves a repository with one commit on main; with tls, over
// HTTPS with a certificate of a CA the fetcher is not told about.
func servedRepo(t *testing.T, tls bool) *gitserver.Server {
	t.Helper()
	ctx := context.Background()
	srv := &gitserver.Server{Root: t.TempDir(), Token: "s3cret"}
	if tls {
		ca, err := certs.NewCA("gitsync-test-ca", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if srv.TLS, err = ca.Issue([]string{"127.0.0.1"}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(ctx) })
	bare, err := srv.InitBare(ctx, "policies")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "a.yaml"), []byte("kind: X\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"commit", "-q", "-m", "one"}, {"push", "-q", bare, "main"}} {
		cmd := exec.Command("git", append([]string{"-C", work}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	return srv
}

func TestSourceErrorCodes(t *testing.T) {
	srv := servedRepo(t, false)
	tlsSrv := servedRepo(t, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/policies.git"
	_ = ln.Close()

	key, pub, err := gitserver.NewSSHKey()
	if err != nil {
		t.Fatal(err)
	}
	sshSrv := &gitserver.SSHServer{Root: srv.Root, AuthorizedKey: pub}
	if err := sshSrv.Start(); err != nil {
		t.Fatal(err)
	}
	defer sshSrv.Close()
	otherHost := strings.Replace(string(sshSrv.KnownHosts()), "127.0.0.1", "127.0.0.2", 1)

	good := gitsource.Spec{Repo: srv.URL("policies"), Auth: gitsource.AuthToken, Token: "s3cret"}
	with := func(f func(*gitsource.Spec)) gitsource.Spec { s := good; f(&s); return s }
	for _, c := range []struct {
		name       string
		spec       gitsource.Spec
		code, want string
	}{
		{"wrong token", with(func(s *gitsource.Spec) { s.Token = "wrong" }), CodeSourceAuth, "spec.git.secretRef"},
		{"missing repository", with(func(s *gitsource.Spec) { s.Repo = srv.URL("nope") }), CodeSourceNotFound, "spec.git.repo"},
		{"missing branch", with(func(s *gitsource.Spec) { s.Branch = "no-such-branch" }), CodeSourceRefNotFound, "no-such-branch"},
		{"closed port", with(func(s *gitsource.Spec) { s.Repo = closed }), CodeSourceUnreachable, "connection refused"},
		{"untrusted CA", with(func(s *gitsource.Spec) { s.Repo = tlsSrv.URL("policies") }), CodeSourceTLS, "spec.git.caCertSecretRef"},
		{"unknown ssh host key", gitsource.Spec{Repo: sshSrv.URL("policies"), Auth: gitsource.AuthSSH, SSHKey: key, KnownHosts: []byte(otherHost)}, CodeSourceHostKey, "known_hosts"},
		{"no URL", gitsource.Spec{}, CodeSource, "no repository URL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := (&gitsource.Fetcher{CacheDir: t.TempDir()}).Fetch(context.Background(), c.spec)
			if err == nil {
				t.Fatal("fetch succeeded")
			}
			e := sourceError(err)
			t.Logf("[%s] %s", e.Code, e.Message)
			if e.Code != c.code || !strings.Contains(e.Message, c.want) {
				t.Fatalf("status error %+v, want code %s and a message with %q", e, c.code, c.want)
			}
		})
	}
	if _, err := (&gitsource.Fetcher{CacheDir: t.TempDir()}).Fetch(context.Background(), good); err != nil {
		t.Fatalf("the good spec fails too, so the cases above prove nothing: %v", err)
	}
	goodSSH := gitsource.Spec{Repo: sshSrv.URL("policies"), Auth: gitsource.AuthSSH, SSHKey: key, KnownHosts: sshSrv.KnownHosts()}
	if _, err := (&gitsource.Fetcher{CacheDir: t.TempDir()}).Fetch(context.Background(), goodSSH); err != nil {
		t.Fatalf("the good ssh spec fails too: %v", err)
	}
}
