package up

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5"
)

func TestEnsureRepoHoldsTheStarterPoliciesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policies")
	created, err := ensureRepo(path)
	if err != nil || !created {
		t.Fatalf("first ensureRepo: created=%v err=%v", created, err)
	}
	for _, name := range StarterPolicies {
		for _, f := range []string{"template.yaml", "constraint.yaml"} {
			if _, err := os.Stat(filepath.Join(path, name, f)); err != nil {
				t.Errorf("starter file missing: %v", err)
			}
		}
	}
	repo, err := git.PlainOpen(path)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil || head.Name().Short() != "main" {
		t.Fatalf("HEAD %v %v, want branch main", head, err)
	}
	wt, _ := repo.Worktree()
	if st, err := wt.Status(); err != nil || !st.IsClean() {
		t.Errorf("the work tree is not clean after the first commit: %v %v", st, err)
	}
	// A repository that exists is the user's: never touched again.
	if err := os.WriteFile(filepath.Join(path, "mine.yaml"), []byte("x: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if created, err := ensureRepo(path); err != nil || created {
		t.Fatalf("second ensureRepo: created=%v err=%v", created, err)
	}
	if _, err := os.Stat(filepath.Join(path, "mine.yaml")); err != nil {
		t.Errorf("the user's file is gone: %v", err)
	}
}

func TestHooksRunTheNotifier(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "policies")
	if _, err := ensureRepo(repo); err != nil {
		t.Fatal(err)
	}
	// A fake bouncer that records its arguments stands in for the binary.
	record := filepath.Join(dir, "args")
	self := filepath.Join(dir, "fake bouncer")
	if err := os.WriteFile(self, []byte("#!/bin/sh\necho \"$@\" > '"+record+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeHooks(repo, self, dir); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "--allow-empty", "-m", "x")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git commit: %v\n%s", err, out)
	}
	got, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("the post-commit hook did not run the notifier: %v", err)
	}
	if want := "up --notify --dir " + dir; strings.TrimSpace(string(got)) != want {
		t.Errorf("hook ran %q, want %q", got, want)
	}
}

func TestPrefixWriterPrefixesWholeLines(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	w := &prefixWriter{mu: &mu, w: &out, prefix: "cluster-2: "}
	for _, chunk := range []string{"up: sta", "rting\nup: rea", "dy\npartial"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	w.flush()
	want := "cluster-2: up: starting\ncluster-2: up: ready\ncluster-2: partial\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestUpFleetRefusesBadSizes(t *testing.T) {
	for _, n := range []int{0, 1, MaxFleet + 1} {
		if _, _, err := UpFleet(t.Context(), FleetOptions{Dir: t.TempDir(), Clusters: n}, &bytes.Buffer{}); err == nil {
			t.Errorf("--clusters %d accepted", n)
		}
	}
}
