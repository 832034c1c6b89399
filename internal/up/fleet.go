package up

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/library"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// A fleet is N local clusters in dir/cluster-1 … dir/cluster-N, each a
// daemon of its own, all syncing one git repository in dir/policies with a
// PolicySync: what a platform team's fleet does with its policy repository,
// on one machine. Each cluster pulls for itself, as in a real fleet; a
// post-commit hook calls every cluster's receiver so a commit is enforced
// in seconds, and each cluster polls as the safety net.
const (
	fleetFile     = "fleet.json"
	repoDir       = "policies"
	tokenFile     = "receiver-token"
	fleetContexts = "cluster-"
	// MaxFleet is the most clusters this machine runs side by side.
	MaxFleet = 3
	// FleetSyncName is the PolicySync every cluster of a fleet syncs with.
	FleetSyncName = "fleet"
	// fleetSecret holds the receiver's token in each cluster.
	fleetSecret = "fleet-receiver"
	// FleetPeriod is each cluster's poll period, the safety net behind the
	// post-commit hook.
	FleetPeriod = 5 * time.Second
)

// Fleet is what dir/fleet.json records.
type Fleet struct {
	// Repo is the git work tree every cluster syncs from.
	Repo string `json:"repo"`
	// Clusters are the clusters' state directories, cluster-1 first.
	Clusters []string `json:"clusters"`
	// Kubeconfig has one context per cluster, named cluster-1 ….
	Kubeconfig string `json:"kubeconfig"`
}

// ContextName is the kubeconfig context of the fleet's i-th cluster (from 1).
func ContextName(i int) string { return fmt.Sprintf("%s%d", fleetContexts, i) }

// ReadFleet returns dir's fleet, or nil when dir holds none.
func ReadFleet(dir string) (*Fleet, error) {
	b, err := os.ReadFile(filepath.Join(dir, fleetFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f Fleet
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, fleetFile), err)
	}
	return &f, nil
}

// FleetOptions configure UpFleet.
type FleetOptions struct {
	// Self is the bouncer executable.
	Self string
	// Dir holds the fleet: its repository, kubeconfig and one state
	// directory per cluster.
	Dir string
	// Clusters is how many clusters to run, 2 to MaxFleet.
	Clusters int
	// Timeout bounds the wait for each cluster's readiness.
	Timeout time.Duration
}

// UpFleet starts (or finds running) every cluster of the fleet, each
// syncing dir/policies, which it creates with the starter policies when
// missing. It returns once every cluster has applied the repository's
// commit, or with the first cluster's error.
func UpFleet(ctx context.Context, o FleetOptions, out io.Writer) (*Fleet, []*State, error) {
	if o.Clusters < 2 || o.Clusters > MaxFleet {
		return nil, nil, fmt.Errorf("--clusters %d: a local fleet has 2 to %d clusters on this machine", o.Clusters, MaxFleet)
	}
	if Running(o.Dir) {
		return nil, nil, fmt.Errorf("a single cluster runs on %s; stop it first (%s) or give another --dir", o.Dir, Command("down", o.Dir))
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, nil, err
	}
	old, err := ReadFleet(o.Dir)
	if err != nil {
		return nil, nil, err
	}
	if old != nil && len(old.Clusters) != o.Clusters {
		for _, c := range old.Clusters {
			if Running(c) {
				return nil, nil, fmt.Errorf("a fleet of %d clusters runs on %s; stop it first (%s)", len(old.Clusters), o.Dir, Command("down", o.Dir))
			}
		}
	}
	f := &Fleet{Repo: filepath.Join(o.Dir, repoDir), Kubeconfig: filepath.Join(o.Dir, kubeconfigOut)}
	for i := 1; i <= o.Clusters; i++ {
		f.Clusters = append(f.Clusters, filepath.Join(o.Dir, ContextName(i)))
	}
	created, err := ensureRepo(f.Repo)
	if err != nil {
		return nil, nil, fmt.Errorf("the fleet's policy repository: %w", err)
	}
	if created {
		fmt.Fprintf(out, "Created the fleet's policy repository %s with the starter policies %v\n", f.Repo, StarterPolicies)
	}
	token, err := ensureToken(filepath.Join(o.Dir, tokenFile))
	if err != nil {
		return nil, nil, err
	}
	if err := writeHooks(f.Repo, o.Self, o.Dir); err != nil {
		return nil, nil, err
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	if err := os.WriteFile(filepath.Join(o.Dir, fleetFile), b, 0o644); err != nil {
		return nil, nil, err
	}

	states := make([]*State, len(f.Clusters))
	errs := make([]error, len(f.Clusters))
	var outMu sync.Mutex
	var wg sync.WaitGroup
	for i, dir := range f.Clusters {
		wg.Go(func() {
			w := &prefixWriter{mu: &outMu, w: out, prefix: ContextName(i+1) + ": "}
			states[i], errs[i] = Up(ctx, Options{Self: o.Self, Dir: dir, Timeout: o.Timeout,
				SyncRepo: "file://" + f.Repo, SyncToken: token}, w)
			w.flush()
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return f, states, fmt.Errorf("%s: %w", ContextName(i+1), err)
		}
	}
	if err := writeFleetKubeconfig(f.Kubeconfig, states); err != nil {
		return f, states, err
	}
	return f, states, nil
}

// DownFleet stops every cluster of the fleet in dir; purge also removes
// their data and the fleet's kubeconfig, never the policy repository,
// which holds the user's commits.
func DownFleet(dir string, f *Fleet, purge bool, out io.Writer, timeout time.Duration) error {
	var errs []error
	for i, c := range f.Clusters {
		fmt.Fprintf(out, "%s: ", ContextName(i+1))
		if err := Down(c, purge, out, timeout); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ContextName(i+1), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if purge {
		for _, name := range []string{fleetFile, kubeconfigOut, tokenFile} {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		fmt.Fprintf(out, "The fleet's policy repository %s is kept (your commits); remove it yourself if you want it gone.\n", f.Repo)
	}
	return nil
}

// ensureRepo creates a git work tree at path holding the starter policies
// in one commit on main, unless a repository is there already.
func ensureRepo(path string) (bool, error) {
	if _, err := git.PlainOpen(path); err == nil {
		return false, nil
	}
	repo, err := git.PlainInitWithOptions(path, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		return false, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return false, err
	}
	for _, name := range StarterPolicies {
		for _, file := range []string{"template.yaml", "constraint.yaml"} {
			raw, err := fs.ReadFile(library.FS, name+"/"+file)
			if err != nil {
				return false, fmt.Errorf("starter policy %s: %w", name, err)
			}
			rel := filepath.Join(name, file)
			if err := os.MkdirAll(filepath.Join(path, name), 0o755); err != nil {
				return false, err
			}
			if err := os.WriteFile(filepath.Join(path, rel), raw, 0o644); err != nil {
				return false, err
			}
			if _, err := wt.Add(rel); err != nil {
				return false, err
			}
		}
	}
	readme := "# The fleet's policies\n\nEvery cluster of `bouncer up --clusters N` syncs this repository (PolicySync `" + FleetSyncName + "`).\nCommit here: a post-commit hook asks every cluster to sync at once.\n"
	if err := os.WriteFile(filepath.Join(path, "README.md"), []byte(readme), 0o644); err != nil {
		return false, err
	}
	if _, err := wt.Add("README.md"); err != nil {
		return false, err
	}
	sig := &object.Signature{Name: "bouncer up", Email: "bouncer-up@localhost", When: time.Now()}
	if _, err := wt.Commit("starter policies: "+strings.Join(StarterPolicies, ", "), &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		return false, err
	}
	return true, nil
}

// ensureToken returns the receiver token kept in path, making one first.
func ensureToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", err
	}
	return token, nil
}

// writeHooks installs git hooks that ask every cluster to sync after a
// commit, a merge or a rewrite (amend, rebase) in the fleet's repository.
func writeHooks(repo, self, dir string) error {
	script := "#!/bin/sh\n# Written by bouncer up: asks every cluster of the local fleet to sync now\n# (each also polls every " + FleetPeriod.String() + ").\nexec " + shellQuote(self) + " up --notify --dir " + shellQuote(dir) + "\n"
	hooks := filepath.Join(repo, ".git", "hooks")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"post-commit", "post-merge", "post-rewrite"} {
		if err := os.WriteFile(filepath.Join(hooks, name), []byte(script), 0o755); err != nil {
			return fmt.Errorf("writing the %s hook: %w", name, err)
		}
	}
	return nil
}

// writeFleetKubeconfig writes one kubeconfig with a context per cluster,
// cluster-1 current.
func writeFleetKubeconfig(path string, states []*State) error {
	merged := clientcmdapi.NewConfig()
	for i, s := range states {
		cfg, err := clientcmd.LoadFromFile(s.Kubeconfig)
		if err != nil {
			return err
		}
		ctx := cfg.Contexts[cfg.CurrentContext]
		if ctx == nil || cfg.Clusters[ctx.Cluster] == nil || cfg.AuthInfos[ctx.AuthInfo] == nil {
			return fmt.Errorf("%s: no current context", s.Kubeconfig)
		}
		name := ContextName(i + 1)
		merged.Clusters[name] = cfg.Clusters[ctx.Cluster]
		merged.AuthInfos[name] = cfg.AuthInfos[ctx.AuthInfo]
		merged.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	merged.CurrentContext = ContextName(1)
	return clientcmd.WriteToFile(*merged, path)
}

// prefixWriter prefixes each whole line with the cluster's name, so the
// clusters' progress can interleave on one terminal.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		_, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
		if err != nil {
			return len(b), err
		}
	}
}

func (p *prefixWriter) flush() {
	if len(p.buf) > 0 {
		_, _ = p.Write([]byte("\n"))
	}
}

// PrintFleetReady tells the user what runs and how to change every
// cluster's policies with one commit.
func PrintFleetReady(out io.Writer, f *Fleet, states []*State, dir string) {
	fmt.Fprintf(out, "\nA fleet of %d local clusters with Bouncer enforcing, each syncing %s\n", len(states), f.Repo)
	for i, s := range states {
		fmt.Fprintf(out, "  %s  %s  (state: %s)\n", ContextName(i+1), s.APIServer, f.Clusters[i])
	}
	fmt.Fprintf(out, "  kubeconfig: %s (contexts %s … %s)\n\n", f.Kubeconfig, ContextName(1), ContextName(len(states)))
	fmt.Fprintf(out, "Change every cluster's policies with one commit:\n")
	fmt.Fprintf(out, "  cd %s\n", shellQuote(f.Repo))
	fmt.Fprintf(out, "  bouncer library export --bundle pss-restricted .   # or edit the YAML\n")
	fmt.Fprintf(out, "  git add -A && git commit -m 'enforce Pod Security restricted'\n")
	fmt.Fprintf(out, "  kubectl --kubeconfig %s --context %s get policysync -n %s\n", shellQuote(f.Kubeconfig), ContextName(len(states)), Namespace)
	fmt.Fprintf(out, "The commit's hook asks every cluster to sync at once; each also polls every %s.\n", FleetPeriod)
	fmt.Fprintf(out, "Stop everything with: %s (data kept; --purge removes it, never the repository)\n", Command("down", dir))
}
