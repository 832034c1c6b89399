package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// The cache directory holds:
//
//	lock               taken for the whole of a fetch
//	repo/              bare repository, fetched into incrementally
//	checkout-<commit>/ work trees: the current one and the one before it
//	current            the name of the current work tree
//	.tmp-*             work trees and fresh clones being written, or removed
const (
	repoDir        = "repo"
	checkoutPrefix = "checkout-"
	tmpPrefix      = ".tmp-"
	currentFile    = "current"
	remoteName     = "origin"
	// every fetch adds a pack and go-git does not repack, so past this many
	// the cache is cloned afresh rather than slowing every object lookup.
	maxPacks = 64
	// deepenAll is the depth that turns a shallow repository into a full
	// one; depth 0 would keep its shallow boundary.
	deepenAll = 0x7fffffff
)

var hexRevision = regexp.MustCompile(`^[0-9a-fA-F]{4,40}$`)

// errUnsafeTree marks a commit whose tree cannot be written safely: the
// commit's doing, so a fresh clone would not help.
var errUnsafeTree = errors.New("unsafe work tree")

// cache is one Fetch's view of a cache directory, used under its lock.
type cache struct {
	dir     string
	log     *slog.Logger
	spec    Spec
	auth    transport.AuthMethod
	timeout time.Duration
}

func (c *cache) fetch(ctx context.Context) (Checkout, error) {
	c.sweep()
	repo, why := c.open()
	if repo != nil {
		co, err := c.attempt(ctx, repo)
		if err == nil || !reclonable(err) {
			return co, err
		}
		why = "fetching into it failed: " + err.Error()
	}
	if why != "" {
		c.log.Warn("git: cloning afresh: the cached repository cannot be used", "repo", redact(c.spec.Repo), "cacheDir", c.dir, "reason", why)
	}
	// The fresh clone replaces the cache only once it worked, so a clone
	// that fails too (the server went down meanwhile) leaves the cache as
	// it was for the next pass.
	staging, err := os.MkdirTemp(c.dir, tmpPrefix)
	if err != nil {
		return Checkout{}, fmt.Errorf("git: cache directory: %w", err)
	}
	defer os.RemoveAll(staging)
	path := filepath.Join(staging, repoDir)
	repo, err = c.init(path)
	if err != nil {
		return Checkout{}, err
	}
	co, err := c.attempt(ctx, repo)
	if err != nil {
		return Checkout{}, err
	}
	if err := c.remove(repoDir); err != nil {
		return Checkout{}, err
	}
	if err := os.Rename(path, filepath.Join(c.dir, repoDir)); err != nil {
		return Checkout{}, fmt.Errorf("git: moving the fresh clone into %s: %w", c.dir, err)
	}
	return co, nil
}

// attempt fetches the spec's revision into repo and writes its work tree.
func (c *cache) attempt(ctx context.Context, repo *git.Repository) (Checkout, error) {
	hash, ref, err := c.resolve(ctx, repo)
	if err != nil {
		return Checkout{}, err
	}
	dir, err := c.checkout(repo, hash)
	if err != nil {
		return Checkout{}, &FetchError{Kind: KindOther, Repo: redact(c.spec.Repo), Ref: ref, Err: err}
	}
	return Checkout{Commit: hash.String(), Dir: dir}, nil
}

// open returns the cached repository, or nil and why it cannot be used
// (no reason when there is none yet).
func (c *cache) open() (*git.Repository, string) {
	path := filepath.Join(c.dir, repoDir)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, ""
	}
	repo, err := git.PlainOpen(path)
	if err != nil {
		return nil, "it does not open: " + err.Error()
	}
	remote, err := repo.Remote(remoteName)
	if err != nil {
		return nil, "it has no remote: " + err.Error()
	}
	if urls := remote.Config().URLs; len(urls) != 1 || urls[0] != c.spec.Repo {
		return nil, "the repository URL changed"
	}
	packs, _ := filepath.Glob(filepath.Join(path, "objects", "pack", "*.pack"))
	if len(packs) > maxPacks {
		return nil, fmt.Sprintf("%d packs accumulated", len(packs))
	}
	return repo, ""
}

// init creates an empty repository at path, its remote the spec's URL.
func (c *cache) init(path string) (*git.Repository, error) {
	repo, err := git.PlainInit(path, true)
	if err != nil {
		return nil, fmt.Errorf("git: creating the cached repository in %s: %w", path, err)
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{c.spec.Repo}}); err != nil {
		return nil, fmt.Errorf("git: configuring the cached repository in %s: %w", path, err)
	}
	return repo, nil
}

// resolve fetches what the spec names and returns its commit, and the
// ref's description for errors.
func (c *cache) resolve(ctx context.Context, repo *git.Repository) (plumbing.Hash, string, error) {
	s := c.spec
	if s.Revision == "" {
		branch := s.Branch
		if branch == "" {
			branch = "main"
		}
		ref := fmt.Sprintf("branch %q", branch)
		local := plumbing.NewRemoteReferenceName(remoteName, branch)
		spec := config.RefSpec(fmt.Sprintf("+%s:%s", plumbing.NewBranchReferenceName(branch), local))
		if err := c.fetchRefs(ctx, repo, ref, 1, spec); err != nil {
			return plumbing.ZeroHash, ref, err
		}
		h, err := c.commitAt(repo, local, ref)
		return h, ref, err
	}

	ref := fmt.Sprintf("revision %q", s.Revision)
	// A commit already cached is immutable: no network. Tags are asked
	// for every time, since a tag can be moved.
	if hexRevision.MatchString(s.Revision) {
		if h, err := repo.ResolveRevision(plumbing.Revision(s.Revision)); err == nil {
			if _, err := repo.CommitObject(*h); err == nil {
				return *h, ref, nil
			}
		}
	}
	tag := plumbing.NewTagReferenceName(s.Revision)
	err := c.fetchRefs(ctx, repo, ref, 1, config.RefSpec(fmt.Sprintf("+%s:%s", tag, tag)))
	if err == nil {
		h, err := c.commitAt(repo, tag, ref)
		return h, ref, err
	}
	if KindOf(err) != KindRefNotFound {
		return plumbing.ZeroHash, ref, err
	}
	// Not a tag, so a commit: plain git servers refuse to send a commit
	// by hash, so take every branch's full history and look in it.
	depth := 0
	if shallow, _ := repo.Storer.Shallow(); len(shallow) > 0 {
		depth = deepenAll
	}
	all := config.RefSpec(fmt.Sprintf("+refs/heads/*:refs/remotes/%s/*", remoteName))
	if err := c.fetchRefs(ctx, repo, ref, depth, all); err != nil {
		return plumbing.ZeroHash, ref, err
	}
	h, err := repo.ResolveRevision(plumbing.Revision(s.Revision))
	if err != nil {
		return plumbing.ZeroHash, ref, refNotFound(s.Repo, ref, "%s is neither a tag nor a commit", s.Revision)
	}
	return *h, ref, nil
}

// fetchRefs fetches refspecs into repo; already having them is success.
func (c *cache) fetchRefs(ctx context.Context, repo *git.Repository, ref string, depth int, specs ...config.RefSpec) error {
	err := repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName, RefSpecs: specs, Depth: depth, Auth: c.auth,
		CABundle: c.spec.CABundle, Tags: git.NoTags, Force: true,
	})
	if err == nil || errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	if errors.Is(context.Cause(ctx), errTimeout) {
		return &FetchError{Kind: KindUnreachable, Repo: redact(c.spec.Repo), Ref: ref,
			Err: fmt.Errorf("no answer within %s: %w", c.timeout, err)}
	}
	return fetchError(c.spec.Repo, ref, err)
}

// commitAt is the commit a fetched ref names, peeling an annotated tag.
func (c *cache) commitAt(repo *git.Repository, name plumbing.ReferenceName, ref string) (plumbing.Hash, error) {
	r, err := repo.Reference(name, true)
	if err != nil {
		return plumbing.ZeroHash, &FetchError{Kind: KindOther, Repo: redact(c.spec.Repo), Ref: ref, Err: fmt.Errorf("reading fetched %s: %w", name, err)}
	}
	h := r.Hash()
	if t, err := repo.TagObject(h); err == nil {
		commit, err := t.Commit()
		if err != nil {
			return plumbing.ZeroHash, refNotFound(c.spec.Repo, ref, "tag %s does not name a commit: %v", t.Name, err)
		}
		return commit.Hash, nil
	}
	if _, err := repo.CommitObject(h); err != nil {
		return plumbing.ZeroHash, &FetchError{Kind: KindOther, Repo: redact(c.spec.Repo), Ref: ref, Err: fmt.Errorf("commit %s is not in the cached repository: %w", h, err)}
	}
	return h, nil
}

// checkout returns the work tree of commit, writing it when missing, and
// removes the work trees older than the previous one.
func (c *cache) checkout(repo *git.Repository, commit plumbing.Hash) (string, error) {
	name := checkoutPrefix + commit.String()
	dir := filepath.Join(c.dir, name)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if err := c.remove(name); err != nil {
			return "", err
		}
		tmp, err := os.MkdirTemp(c.dir, tmpPrefix)
		if err != nil {
			return "", fmt.Errorf("creating a work tree: %w", err)
		}
		if err := export(repo, commit, tmp); err != nil {
			_ = os.RemoveAll(tmp)
			return "", fmt.Errorf("writing the work tree of %s: %w", commit, err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			_ = os.RemoveAll(tmp)
			return "", fmt.Errorf("moving the work tree into place: %w", err)
		}
	}
	prev, _ := os.ReadFile(filepath.Join(c.dir, currentFile))
	if err := writeAtomic(filepath.Join(c.dir, currentFile), []byte(name)); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return "", fmt.Errorf("listing %s: %w", c.dir, err)
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, checkoutPrefix) && n != name && n != string(prev) {
			if err := c.remove(n); err != nil {
				c.log.Warn("git: removing an old work tree", "dir", filepath.Join(c.dir, n), "err", err)
			}
		}
	}
	return dir, nil
}

// export writes the tree of commit into the empty directory root. Regular
// files go first and symlinks last, each checked to stay inside root, so a
// crafted tree cannot make the export write or point outside it.
func export(repo *git.Repository, commit plumbing.Hash, root string) error {
	co, err := repo.CommitObject(commit)
	if err != nil {
		return err
	}
	tree, err := co.Tree()
	if err != nil {
		return fmt.Errorf("reading its tree: %w", err)
	}
	var links []*object.File
	err = tree.Files().ForEach(func(f *object.File) error {
		if !filepath.IsLocal(filepath.FromSlash(f.Name)) {
			return fmt.Errorf("%w: path %q leaves the work tree", errUnsafeTree, f.Name)
		}
		if f.Mode == filemode.Symlink {
			links = append(links, f)
			return nil
		}
		return writeBlob(f, filepath.Join(root, filepath.FromSlash(f.Name)))
	})
	if err != nil {
		return err
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	made := map[string]bool{}
	for _, f := range links {
		for d := filepath.Dir(f.Name); d != "."; d = filepath.Dir(d) {
			if made[d] {
				return fmt.Errorf("%w: symlink %q lies under symlink %q", errUnsafeTree, f.Name, d)
			}
		}
		target, err := f.Contents()
		if err != nil {
			return fmt.Errorf("reading symlink %q: %w", f.Name, err)
		}
		path := filepath.Join(root, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, path); err != nil {
			return err
		}
		made[f.Name] = true
	}
	for name := range made {
		real, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(name)))
		rel, relErr := filepath.Rel(realRoot, real)
		if err != nil || relErr != nil || !filepath.IsLocal(rel) {
			return fmt.Errorf("%w: symlink %q points outside the repository or nowhere", errUnsafeTree, name)
		}
	}
	return nil
}

func writeBlob(f *object.File, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if f.Mode == filemode.Executable {
		perm = 0o755
	}
	r, err := f.Reader()
	if err != nil {
		return fmt.Errorf("reading %q: %w", f.Name, err)
	}
	defer r.Close()
	out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		_ = out.Close()
		return fmt.Errorf("writing %q: %w", f.Name, err)
	}
	return out.Close()
}

// sweep removes what a killed fetch left half-done, and the work tree of
// the layout before the cache (one clone in work/).
func (c *cache) sweep() {
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, tmpPrefix) || n == "work" {
			_ = os.RemoveAll(filepath.Join(c.dir, n))
		}
	}
}

// remove deletes c.dir/name by renaming it aside first, so a removal cut
// short leaves a .tmp- name that sweep clears, never a partial work tree
// under its commit's name.
func (c *cache) remove(name string) error {
	path := filepath.Join(c.dir, name)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	aside, err := os.MkdirTemp(c.dir, tmpPrefix)
	if err != nil {
		return fmt.Errorf("git: removing %s: %w", path, err)
	}
	gone := filepath.Join(aside, name)
	if err := os.Rename(path, gone); err != nil {
		return fmt.Errorf("git: removing %s: %w", path, err)
	}
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("git: removing %s: %w", path, err)
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), tmpPrefix)
	if err != nil {
		return fmt.Errorf("git: writing %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("git: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("git: writing %s: %w", path, err)
	}
	return nil
}
