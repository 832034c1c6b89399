package gitsource

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/internal/gitserver"
)

// gitCmd runs git in dir with an author set.
func gitCmd(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	return cmd
}

func runGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitCmd(dir, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestFetchOverHTTP(t *testing.T) {
	ctx := context.Background()
	srv := &gitserver.Server{Root: t.TempDir(), Token: "s3cret"}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(ctx)
	if _, err := srv.InitBare(ctx, "policies"); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	runGit(t, work, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(work, "a.yaml"), []byte("kind: X\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runGit(t, work, "add", ".")
	runGit(t, work, "commit", "-q", "-m", "one")
	want := runGit(t, work, "rev-parse", "HEAD")
	url := strings.Replace(srv.URL("policies"), "http://", "http://git:s3cret@", 1)
	runGit(t, work, "push", "-q", url, "main")

	f := &Fetcher{CacheDir: t.TempDir()}
	if _, err := f.Fetch(ctx, Spec{Repo: srv.URL("policies")}); err == nil {
		t.Fatal("fetch without the token succeeded")
	}
	co, err := f.Fetch(ctx, Spec{Repo: srv.URL("policies"), Auth: AuthToken, Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if co.Commit != want {
		t.Fatalf("commit %s, want %s", co.Commit, want)
	}
	if b, err := os.ReadFile(filepath.Join(co.Dir, "a.yaml")); err != nil || string(b) != "kind: X\n" {
		t.Fatalf("a.yaml: %q %v", b, err)
	}

	// A tag and an older commit by hash, after a second commit on main.
	runGit(t, work, "tag", "v1")
	if err := os.WriteFile(filepath.Join(work, "a.yaml"), []byte("kind: Y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runGit(t, work, "commit", "-q", "-am", "two")
	runGit(t, work, "push", "-q", "--tags", url, "main")
	tok := Spec{Repo: srv.URL("policies"), Auth: AuthToken, Token: "s3cret"}
	for _, rev := range []string{"v1", want, want[:10]} {
		s := tok
		s.Revision = rev
		co, err := f.Fetch(ctx, s)
		if err != nil {
			t.Fatalf("revision %s: %v", rev, err)
		}
		if co.Commit != want {
			t.Fatalf("revision %s: commit %s, want %s", rev, co.Commit, want)
		}
		if b, _ := os.ReadFile(filepath.Join(co.Dir, "a.yaml")); string(b) != "kind: X\n" {
			t.Fatalf("revision %s: a.yaml %q", rev, b)
		}
	}
	s := tok
	s.Revision = "no-such-ref"
	if _, err := f.Fetch(ctx, s); err == nil || !strings.Contains(err.Error(), "neither a tag nor a commit") {
		t.Fatalf("missing revision: %v", err)
	}
	if _, err := f.Fetch(ctx, Spec{Repo: srv.URL("policies"), Auth: AuthSSH}); err == nil {
		t.Fatal("ssh without a key succeeded")
	}
}
