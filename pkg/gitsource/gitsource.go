// Package gitsource fetches one revision of a git repository into a local
// directory for git sync, with the repository's credentials. The repository
// is cached between fetches, which fetch at depth 1 only what changed;
// failures are typed by kind (auth, not found, unreachable, TLS, ...) so
// callers can report them without parsing messages. It knows nothing of
// Kubernetes.
package gitsource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

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
	// Dir is the work tree's root, written once for its commit and never
	// changed; it stays valid until the second Fetch after this one into
	// the same cache directory.
	Dir string
}

// Fetcher fetches into its own cache directory.
type Fetcher struct {
	// CacheDir holds the cached repository and the work trees; one
	// Fetcher per repository.
	CacheDir string
	// Log gets a line when the cache is replaced by a fresh clone; nil
	// means slog.Default().
	Log *slog.Logger
	// Timeout bounds a whole Fetch, so a server that accepts connections
	// and never answers fails the fetch (KindUnreachable) instead of
	// holding it forever; 0 means no bound beyond the context's.
	Timeout time.Duration
}

// errTimeout is the cause of a Fetch cut short by Fetcher.Timeout.
var errTimeout = errors.New("fetch timed out")

// Fetch brings the spec's revision into CacheDir and returns its work tree.
//
// The repository stays in CacheDir between fetches, so a fetch transfers
// only what changed: a branch or tag is fetched at depth 1 into the cached
// repository (nothing but a ref listing when its tip is unchanged), and a
// commit already cached needs no network at all. A commit named by hash
// may not be the tip of any ref, so an uncached one makes the fetch take
// the full history of every branch. A cache that is corrupt, belongs to
// another URL or fails a fetch in a way the server cannot explain is
// replaced by a fresh clone, once that clone has worked.
//
// Fetches into one cache directory take turns (a lock file), and a work
// tree is written under a temporary name and renamed into place when
// complete, so a fetch killed half-way never leaves a work tree that
// looks whole. Failures of the server, the credentials, the ref or the
// cache are *FetchError; a spec that cannot be used is a plain error.
func (f *Fetcher) Fetch(ctx context.Context, s Spec) (Checkout, error) {
	if s.Repo == "" {
		return Checkout{}, errors.New("git: no repository URL")
	}
	if f.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, f.Timeout, errTimeout)
		defer cancel()
	}
	unlock, err := lockDir(ctx, f.CacheDir)
	if err != nil {
		return Checkout{}, err
	}
	defer unlock()
	auth, err := authFor(s, f.CacheDir)
	if err != nil {
		return Checkout{}, err
	}
	c := &cache{dir: f.CacheDir, log: f.Log, spec: s, auth: auth, timeout: f.Timeout}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c.fetch(ctx)
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
