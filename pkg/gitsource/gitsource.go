// Package gitsource fetches one revision of a git repository into a local
// directory for git sync, shallow where the revision allows it, with the
// repository's credentials. Each fetch clones afresh; reusing the clone
// between fetches is still to come. It knows nothing of Kubernetes.
package gitsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Auth methods.
const (
	AuthNone  = "none"
	AuthToken = "token"
	AuthSSH   = "ssh"
)

// Spec says what to fetch.
type Spec struct {
	// Repo is an https, ssh or file URL.
	Repo string
	// Branch is fetched unless Revision is set; empty means "main".
	Branch string
	// Revision is a tag or a commit; it overrides Branch.
	Revision string
	// Auth is one of the Auth* methods; empty means AuthNone.
	Auth string
	// Username and Token are used with AuthToken (HTTP basic auth; a
	// missing username is sent as "git").
	Username string
	Token    string
	// SSHKey (PEM) and KnownHosts are used with AuthSSH.
	SSHKey     []byte
	KnownHosts []byte
	// CABundle (PEM) is trusted for https besides the system roots.
	CABundle []byte
}

// Checkout is a fetched revision on disk.
type Checkout struct {
	// Commit is the full hash of the fetched commit.
	Commit string
	// Dir is the work tree's root; it stays valid until the next Fetch
	// into the same cache directory.
	Dir string
}

// Fetcher fetches into its own cache directory.
type Fetcher struct {
	// CacheDir holds the clone; one Fetcher per repository.
	CacheDir string
}

// Fetch brings the work tree at CacheDir to the spec's revision.
//
// Each fetch clones afresh: depth 1 for a branch or tag; a commit named by
// hash may not be the tip of any ref, so it needs the full history.
func (f *Fetcher) Fetch(ctx context.Context, s Spec) (Checkout, error) {
	if s.Repo == "" {
		return Checkout{}, errors.New("git: no repository URL")
	}
	auth, err := authFor(s, f.CacheDir)
	if err != nil {
		return Checkout{}, err
	}
	dir := filepath.Join(f.CacheDir, "work")
	clone := func(ref plumbing.ReferenceName, depth int) (*git.Repository, error) {
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("git: clearing %s: %w", dir, err)
		}
		return git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{
			URL: s.Repo, Auth: auth, ReferenceName: ref, SingleBranch: ref != "",
			Depth: depth, CABundle: s.CABundle, Tags: git.NoTags,
		})
	}
	if s.Revision == "" {
		branch := s.Branch
		if branch == "" {
			branch = "main"
		}
		repo, err := clone(plumbing.NewBranchReferenceName(branch), 1)
		if err != nil {
			return Checkout{}, fmt.Errorf("git: fetching %s branch %s: %w", s.Repo, branch, err)
		}
		return head(repo, s.Repo, dir)
	}
	if repo, err := clone(plumbing.NewTagReferenceName(s.Revision), 1); err == nil {
		return head(repo, s.Repo, dir)
	} else if ctx.Err() != nil {
		return Checkout{}, fmt.Errorf("git: fetching %s: %w", s.Repo, ctx.Err())
	}
	repo, err := clone("", 0)
	if err != nil {
		return Checkout{}, fmt.Errorf("git: fetching %s: %w", s.Repo, err)
	}
	hash, err := repo.ResolveRevision(plumbing.Revision(s.Revision))
	if err != nil {
		return Checkout{}, fmt.Errorf("git: revision %q is neither a tag nor a commit of %s: %w", s.Revision, s.Repo, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return Checkout{}, fmt.Errorf("git: work tree of %s: %w", s.Repo, err)
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: *hash, Force: true}); err != nil {
		return Checkout{}, fmt.Errorf("git: checking out %s of %s: %w", s.Revision, s.Repo, err)
	}
	return Checkout{Commit: hash.String(), Dir: dir}, nil
}

func head(repo *git.Repository, url, dir string) (Checkout, error) {
	ref, err := repo.Head()
	if err != nil {
		return Checkout{}, fmt.Errorf("git: reading HEAD of %s: %w", url, err)
	}
	return Checkout{Commit: ref.Hash().String(), Dir: dir}, nil
}

// authFor turns the spec's credentials into go-git's; ssh needs known
// hosts, since accepting any host key would hand the cluster's policies to
// whoever answers on the network.
func authFor(s Spec, cacheDir string) (transport.AuthMethod, error) {
	switch s.Auth {
	case "", AuthNone:
		return nil, nil
	case AuthToken:
		user := s.Username
		if user == "" {
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: s.Token}, nil
	case AuthSSH:
		keys, err := gitssh.NewPublicKeys("git", s.SSHKey, "")
		if err != nil {
			return nil, fmt.Errorf("git: ssh private key: %w", err)
		}
		if len(s.KnownHosts) == 0 {
			return nil, errors.New("git: ssh auth needs known_hosts in the Secret")
		}
		if err := os.MkdirAll(cacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("git: cache directory: %w", err)
		}
		hostsFile := filepath.Join(cacheDir, "known_hosts")
		if err := os.WriteFile(hostsFile, s.KnownHosts, 0o600); err != nil {
			return nil, fmt.Errorf("git: writing known_hosts: %w", err)
		}
		cb, err := gitssh.NewKnownHostsCallback(hostsFile)
		if err != nil {
			return nil, fmt.Errorf("git: known_hosts: %w", err)
		}
		keys.HostKeyCallback = cb
		return keys, nil
	}
	return nil, fmt.Errorf("git: auth %q is not none, token or ssh", s.Auth)
}
