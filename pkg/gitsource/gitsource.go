// Package gitsource fetches one revision of a git repository into a local
// directory for git sync: shallow, cached between fetches, with the
// repository's credentials. It knows nothing of Kubernetes.
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
// This first version clones afresh each time (depth 1, branch only); the
// cached, authenticated fetcher is being built.
func (f *Fetcher) Fetch(ctx context.Context, s Spec) (Checkout, error) {
	if s.Repo == "" {
		return Checkout{}, errors.New("git: no repository URL")
	}
	branch := s.Branch
	if branch == "" {
		branch = "main"
	}
	dir := filepath.Join(f.CacheDir, "work")
	if err := os.RemoveAll(dir); err != nil {
		return Checkout{}, fmt.Errorf("git: clearing %s: %w", dir, err)
	}
	var auth transport.AuthMethod
	if s.Auth == AuthToken {
		user := s.Username
		if user == "" {
			user = "git"
		}
		auth = &githttp.BasicAuth{Username: user, Password: s.Token}
	}
	repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{
		URL: s.Repo, Auth: auth, ReferenceName: plumbing.NewBranchReferenceName(branch),
		SingleBranch: true, Depth: 1, CABundle: s.CABundle,
	})
	if err != nil {
		return Checkout{}, fmt.Errorf("git: fetching %s branch %s: %w", s.Repo, branch, err)
	}
	head, err := repo.Head()
	if err != nil {
		return Checkout{}, fmt.Errorf("git: reading HEAD of %s: %w", s.Repo, err)
	}
	return Checkout{Commit: head.Hash().String(), Dir: dir}, nil
}
