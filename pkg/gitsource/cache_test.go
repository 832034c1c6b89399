package gitsource

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bouncer-policy/bouncer/internal/gitserver"
)

// upstream is a served repository and a clone to commit from.
type upstream struct {
	srv  *gitserver.Server
	work string
	push string // the bare repository's directory, for git push
	spec Spec
}

func newUpstream(t *testing.T, srv *gitserver.Server, name string) *upstream {
	t.Helper()
	ctx := context.Background()
	if srv == nil {
		srv = &gitserver.Server{Root: t.TempDir(), Token: "s3cret"}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close(ctx) })
	}
	bare, err := srv.InitBare(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{srv: srv, work: t.TempDir(), push: bare,
		spec: Spec{Repo: srv.URL(name), Auth: AuthToken, Token: "s3cret"}}
	runGit(t, u.work, "init", "-q", "-b", "main")
	return u
}

// commit writes files (an empty content deletes the file), commits and
// pushes main, forcing when asked; it returns the new commit.
func (u *upstream) commit(t *testing.T, force bool, files map[string]string) string {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(u.work, name)
		if content == "" {
			runGit(t, u.work, "rm", "-q", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runGit(t, u.work, "add", "-A")
	runGit(t, u.work, "commit", "-q", "--allow-empty", "-m", "change")
	args := []string{"push", "-q"}
	if force {
		args = append(args, "-f")
	}
	runGit(t, u.work, append(args, u.push, "main")...)
	return runGit(t, u.work, "rev-parse", "HEAD")
}

func fetchOK(t *testing.T, f *Fetcher, s Spec, want string) Checkout {
	t.Helper()
	co, err := f.Fetch(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if co.Commit != want {
		t.Fatalf("fetched %s, want %s", co.Commit, want)
	}
	return co
}

// files lists a work tree as path → content.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFiles(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	got := files(t, dir)
	if len(got) != len(want) {
		t.Fatalf("work tree %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("work tree %v, want %v", got, want)
		}
	}
}

func TestCachedFetchTransfersOnlyChanges(t *testing.T) {
	u := newUpstream(t, nil, "policies")
	c1 := u.commit(t, false, map[string]string{"a.yaml": "a: 1\n", "sub/b.yaml": "b: 1\n"})
	f := &Fetcher{CacheDir: t.TempDir()}

	co := fetchOK(t, f, u.spec, c1)
	sameFiles(t, co.Dir, map[string]string{"a.yaml": "a: 1\n", "sub/b.yaml": "b: 1\n"})
	if n := u.srv.Stats().UploadPacks; n != 1 {
		t.Fatalf("first fetch made %d upload-pack requests, want 1", n)
	}

	before := u.srv.Stats()
	again := fetchOK(t, f, u.spec, c1)
	after := u.srv.Stats()
	if after.UploadPacks != before.UploadPacks || after.UploadPackBytes != before.UploadPackBytes {
		t.Fatalf("fetch of an unchanged branch transferred a pack: %+v then %+v", before, after)
	}
	if after.Requests == before.Requests {
		t.Fatal("fetch of an unchanged branch did not even list refs")
	}
	if again.Dir != co.Dir {
		t.Fatalf("unchanged commit moved work tree from %s to %s", co.Dir, again.Dir)
	}

	// A new commit that changes one file and deletes another.
	c2 := u.commit(t, false, map[string]string{"a.yaml": "a: 2\n", "sub/b.yaml": ""})
	before = u.srv.Stats()
	co = fetchOK(t, f, u.spec, c2)
	if n := u.srv.Stats().UploadPacks - before.UploadPacks; n != 1 {
		t.Fatalf("fetch of a new commit made %d upload-pack requests, want 1", n)
	}
	sameFiles(t, co.Dir, map[string]string{"a.yaml": "a: 2\n"})

	// A force-push that drops c2 for a sibling of it.
	runGit(t, u.work, "reset", "-q", "--hard", c1)
	c3 := u.commit(t, true, map[string]string{"c.yaml": "c: 1\n"})
	co = fetchOK(t, f, u.spec, c3)
	sameFiles(t, co.Dir, map[string]string{"a.yaml": "a: 1\n", "sub/b.yaml": "b: 1\n", "c.yaml": "c: 1\n"})

	// A commit already cached needs no network; an uncached one deepens
	// the shallow cache.
	before = u.srv.Stats()
	s := u.spec
	s.Revision = c2
	co = fetchOK(t, f, s, c2)
	if after := u.srv.Stats(); after.Requests != before.Requests {
		t.Fatalf("fetch of a cached commit made %d requests", after.Requests-before.Requests)
	}
	sameFiles(t, co.Dir, map[string]string{"a.yaml": "a: 2\n"})
	s.Revision = c1[:12]
	co = fetchOK(t, f, s, c1)
	sameFiles(t, co.Dir, map[string]string{"a.yaml": "a: 1\n", "sub/b.yaml": "b: 1\n"})

	// Only the current and the previous work trees are kept.
	entries, err := os.ReadDir(f.CacheDir)
	if err != nil {
		t.Fatal(err)
	}
	var trees []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), checkoutPrefix) {
			trees = append(trees, e.Name())
		}
	}
	if len(trees) != 2 {
		t.Fatalf("work trees kept: %v, want the current and the previous", trees)
	}
}

func TestFetchMovedTag(t *testing.T) {
	u := newUpstream(t, nil, "policies")
	c1 := u.commit(t, false, map[string]string{"a.yaml": "a: 1\n"})
	runGit(t, u.work, "tag", "-a", "-m", "release", "v1")
	runGit(t, u.work, "push", "-q", u.push, "v1")
	f := &Fetcher{CacheDir: t.TempDir()}
	s := u.spec
	s.Revision = "v1"
	fetchOK(t, f, s, c1)

	c2 := u.commit(t, false, map[string]string{"a.yaml": "a: 2\n"})
	runGit(t, u.work, "tag", "-f", "-a", "-m", "release", "v1")
	runGit(t, u.work, "push", "-q", "-f", u.push, "v1")
	co := fetchOK(t, f, s, c2)
	sameFiles(t, co.Dir, map[string]string{"a.yaml": "a: 2\n"})
}

func TestFetchRecoversFromABrokenCache(t *testing.T) {
	u := newUpstream(t, nil, "policies")
	c1 := u.commit(t, false, map[string]string{"a.yaml": "a: 1\n"})
	want := map[string]string{"a.yaml": "a: 1\n"}
	breakages := map[string]func(t *testing.T, dir string){
		"garbage config": func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, repoDir, "config"), []byte("[[[not a config"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"objects lost": func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, repoDir, "objects")); err != nil {
				t.Fatal(err)
			}
		},
		"pack garbled": func(t *testing.T, dir string) {
			packs, _ := filepath.Glob(filepath.Join(dir, repoDir, "objects", "pack", "*"))
			if len(packs) == 0 {
				t.Fatal("no pack in the cache")
			}
			for _, p := range packs {
				if err := os.WriteFile(p, bytes.Repeat([]byte("garbage"), 100), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		},
		"repository is a file": func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, repoDir)); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, repoDir), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"killed while writing a work tree": func(t *testing.T, dir string) {
			// What a kill mid-export leaves: a partial tree under a
			// temporary name, and no work tree under the commit's name.
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), checkoutPrefix) {
					if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(dir, tmpPrefix+"123")); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := os.Remove(filepath.Join(dir, tmpPrefix+"123", "a.yaml")); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, breakCache := range breakages {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			f := &Fetcher{CacheDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&logs, nil))}
			fetchOK(t, f, u.spec, c1)
			breakCache(t, f.CacheDir)
			co := fetchOK(t, f, u.spec, c1)
			sameFiles(t, co.Dir, want)
			if _, err := os.Stat(filepath.Join(f.CacheDir, tmpPrefix+"123")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("leftover of a killed fetch is still there: %v", err)
			}
			// Lost objects are fetched again into the cache; the other
			// breakages need a fresh clone.
			if name != "killed while writing a work tree" && name != "objects lost" && !strings.Contains(logs.String(), "cloning afresh") {
				t.Fatalf("no log line says the cache was cloned afresh: %q", logs.String())
			}
			// And the cache is good again: the next fetch transfers nothing.
			before := u.srv.Stats()
			fetchOK(t, f, u.spec, c1)
			if after := u.srv.Stats(); after.UploadPacks != before.UploadPacks {
				t.Fatal("the recovered cache fetched a pack for an unchanged branch")
			}
		})
	}
}

func TestFetchOfAnotherURLClonesAfresh(t *testing.T) {
	one := newUpstream(t, nil, "one")
	c1 := one.commit(t, false, map[string]string{"one.yaml": "1\n"})
	two := newUpstream(t, one.srv, "two")
	c2 := two.commit(t, false, map[string]string{"two.yaml": "2\n"})
	var logs bytes.Buffer
	f := &Fetcher{CacheDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&logs, nil))}
	fetchOK(t, f, one.spec, c1)
	co := fetchOK(t, f, two.spec, c2)
	sameFiles(t, co.Dir, map[string]string{"two.yaml": "2\n"})
	if !strings.Contains(logs.String(), "URL changed") {
		t.Fatalf("no log line says the URL changed: %q", logs.String())
	}
	// A fresh clone that fails keeps the cache it was to replace.
	if _, err := f.Fetch(context.Background(), Spec{Repo: one.srv.URL("nope"), Auth: AuthToken, Token: "s3cret"}); KindOf(err) != KindNotFound {
		t.Fatalf("fetch of a missing repository: %v, want kind %s", err, KindNotFound)
	}
	logs.Reset()
	before := two.srv.Stats()
	fetchOK(t, f, two.spec, c2)
	if after := two.srv.Stats(); after.UploadPacks != before.UploadPacks || logs.Len() > 0 {
		t.Fatalf("the cache was lost to a failed fresh clone: %d packs fetched, logs %q", after.UploadPacks-before.UploadPacks, logs.String())
	}

	// The first repository's commit is gone from the cache with it.
	s := two.spec
	s.Revision = c1
	if _, err := f.Fetch(context.Background(), s); KindOf(err) != KindRefNotFound {
		t.Fatalf("commit of the other repository: %v (kind %s), want %s", err, KindOf(err), KindRefNotFound)
	}
}

func TestOverlappingFetchesTakeTurns(t *testing.T) {
	u := newUpstream(t, nil, "policies")
	c1 := u.commit(t, false, map[string]string{"a.yaml": "a: 1\n"})
	f := &Fetcher{CacheDir: t.TempDir()}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			co, err := (&Fetcher{CacheDir: f.CacheDir}).Fetch(context.Background(), u.spec)
			if err == nil && co.Commit != c1 {
				err = errors.New("fetched " + co.Commit)
			}
			if err == nil {
				if b, rerr := os.ReadFile(filepath.Join(co.Dir, "a.yaml")); rerr != nil || string(b) != "a: 1\n" {
					err = errors.Join(errors.New("a.yaml: "+string(b)), rerr)
				}
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("fetch %d: %v", i, err)
		}
	}
}

func TestSymlinksStayInsideTheWorkTree(t *testing.T) {
	u := newUpstream(t, nil, "policies")
	u.commit(t, false, map[string]string{"a.yaml": "a: 1\n"})
	if err := os.Symlink("a.yaml", filepath.Join(u.work, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	c2 := u.commit(t, false, nil)
	f := &Fetcher{CacheDir: t.TempDir()}
	co := fetchOK(t, f, u.spec, c2)
	sameFiles(t, co.Dir, map[string]string{"a.yaml": "a: 1\n", "link.yaml": "a: 1\n"})
	if fi, err := os.Lstat(filepath.Join(co.Dir, "link.yaml")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("link.yaml is no symlink: %v %v", fi, err)
	}

	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("token"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"absolute.yaml": secret, "relative.yaml": "../../../../../../../../.." + secret, "dangling.yaml": "nowhere.yaml"} {
		t.Run(name, func(t *testing.T) {
			if err := os.Symlink(target, filepath.Join(u.work, name)); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			f := &Fetcher{CacheDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&logs, nil))}
			fetchOK(t, f, u.spec, runGit(t, u.work, "rev-parse", "HEAD")) // a good cache first
			u.commit(t, false, nil)
			_, err := f.Fetch(context.Background(), u.spec)
			if err == nil || !strings.Contains(err.Error(), name+`" points outside the repository or nowhere`) {
				t.Fatalf("fetch of a commit with symlink %s → %s: %v", name, target, err)
			}
			if logs.Len() > 0 {
				t.Fatalf("a bad commit made the fetcher drop its cache: %s", logs.String())
			}
			runGit(t, u.work, "rm", "-q", name)
			u.commit(t, false, nil)
		})
	}
}
