package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/up"
	"github.com/bouncer-policy/bouncer/pkg/fleet"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestFleet is issue #14's proof on three local clusters started by
// `bouncer up --clusters 3`, all syncing one git repository (a file URL):
// a commit removing the drop-NET_RAW policy is pruned everywhere, the
// commit adding it back is enforced everywhere, with the post-commit hook
// calling each cluster's receiver and with polling alone; a commit with a
// broken template reaches no cluster while the earlier policies stay
// enforced; a constraint deleted by hand in one cluster is restored.
func TestFleet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fleet")
	t.Cleanup(func() {
		if t.Failed() {
			for i := 1; i <= 3; i++ {
				c := filepath.Join(dir, up.ContextName(i))
				t.Logf("%s bouncer-serve.log tail:\n%s", up.ContextName(i), tail(filepath.Join(c, "bouncer-serve.log"), 30))
			}
		}
		if out, err := exec.Command(bouncerBin, "down", "--purge", "--dir", dir).CombinedOutput(); err != nil {
			t.Errorf("down --purge: %v\n%s", err, out)
		}
	})
	out, err := exec.Command(bouncerBin, "up", "--clusters", "3", "--dir", dir, "--timeout", "10m").CombinedOutput()
	if err != nil {
		t.Fatalf("bouncer up --clusters 3: %v\n%s", err, out)
	}
	f, err := up.ReadFleet(dir)
	if err != nil || f == nil || len(f.Clusters) != 3 {
		t.Fatalf("fleet.json: %v %+v", err, f)
	}
	for _, want := range []string{f.Repo, f.Kubeconfig, "git add -A && git commit", "cluster-3"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("up --clusters does not print %q:\n%s", want, out)
		}
	}
	kubectlAt := func(i int, stdin string, args ...string) (string, error) {
		cmd := exec.Command(bins.Kubectl, append([]string{"--kubeconfig", f.Kubeconfig, "--context", up.ContextName(i)}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", f.Repo, "-c", "user.name=e2e", "-c", "user.email=e2e@localhost"}, args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return strings.TrimSpace(string(b))
	}
	netRawPod := func(name string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: default\nspec:\n  containers:\n  - name: c\n    image: nginx:1.27.3\n    securityContext:\n      privileged: false\n", name)
	}
	// admitted tries a Pod keeping NET_RAW with a server-side dry run, so
	// nothing is left behind: nil when admitted, the refusal otherwise.
	admitted := func(i int) error {
		out, err := kubectlAt(i, netRawPod("netraw"), "apply", "--dry-run=server", "-f", "-")
		if err == nil {
			return nil
		}
		if !strings.Contains(strings.ToUpper(out), "NET_RAW") {
			t.Fatalf("%s: refused, but not for NET_RAW: %s", up.ContextName(i), out)
		}
		return fmt.Errorf("%s", strings.TrimSpace(out))
	}
	// everywhere waits until want holds on every cluster and returns how
	// long each took from start.
	everywhere := func(start time.Time, what string, want func(i int) error) []time.Duration {
		t.Helper()
		took := make([]time.Duration, 3)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed []string
		for i := 1; i <= 3; i++ {
			wg.Go(func() {
				deadline := time.Now().Add(90 * time.Second)
				for {
					err := want(i)
					if err == nil {
						took[i-1] = time.Since(start)
						return
					}
					if time.Now().After(deadline) {
						mu.Lock()
						failed = append(failed, fmt.Sprintf("%s: %v", up.ContextName(i), err))
						mu.Unlock()
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		if len(failed) > 0 {
			t.Fatalf("%s: not on every cluster within 90s:\n%s", what, strings.Join(failed, "\n"))
		}
		return took
	}
	refused := func(i int) error {
		if admitted(i) == nil {
			return fmt.Errorf("a Pod keeping NET_RAW is admitted")
		}
		return nil
	}
	isAdmitted := func(i int) error { return admitted(i) }

	for i := 1; i <= 3; i++ {
		if err := refused(i); err != nil {
			t.Fatalf("%s after up: %v", up.ContextName(i), err)
		}
	}

	t.Run("fleet status", func(t *testing.T) {
		head := git("rev-parse", "HEAD")
		out, err := exec.Command(bouncerBin, "fleet", "status", "--kubeconfig", f.Kubeconfig, "--all-contexts", "-o", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("fleet status: %v\n%s", err, out)
		}
		var got struct{ Clusters []fleet.ClusterStatus }
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("fleet status -o json: %v\n%s", err, out)
		}
		if len(got.Clusters) != 3 {
			t.Fatalf("fleet status shows %d clusters, want 3:\n%s", len(got.Clusters), out)
		}
		for i, c := range got.Clusters {
			if c.Name != up.ContextName(i+1) || len(c.Syncs) != 1 || c.Syncs[0].Commit != head || !c.Syncs[0].Ready {
				t.Errorf("cluster %d: want %s with one Ready PolicySync at %s, have %+v", i+1, up.ContextName(i+1), head, c)
			}
			n := len(up.StarterPolicies)
			if c.Templates != n || c.Constraints.Deny != n || c.Enforced != n {
				t.Errorf("%s: want %d templates and %d deny constraints enforced, have %+v", c.Name, n, n, c)
			}
		}
		table, err := exec.Command(bouncerBin, "fleet", "status", "--kubeconfig", f.Kubeconfig, "--all-contexts").CombinedOutput()
		if err != nil || !strings.Contains(string(table), head[:12]) {
			t.Errorf("fleet status table: %v\n%s", err, table)
		}
		t.Logf("bouncer fleet status:\n%s", table)
		// A cluster that does not answer is shown, and the exit status says so.
		cmd := exec.Command(bouncerBin, "fleet", "status", "--kubeconfig", f.Kubeconfig, "--all-contexts", "--kubeconfig", writeUnreachableKubeconfig(t))
		b, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 || !strings.Contains(string(b), "Unreachable") {
			t.Errorf("fleet status with an unreachable cluster: exit %d, %v\n%s", code, err, b)
		}
	})

	t.Run("a removed policy is pruned everywhere, an added one enforced everywhere; the CVE drill", func(t *testing.T) {
		start := time.Now()
		git("rm", "-q", "-r", "drop-net-raw")
		git("commit", "-q", "-m", "remove drop-net-raw")
		everywhere(start, "pruned", isAdmitted)

		// Polling alone: no hook runs for this commit.
		start = time.Now()
		git("-c", "core.hooksPath=/dev/null", "revert", "--no-edit", "HEAD")
		polled := everywhere(start, "enforced by polling", refused)
		t.Logf("commit-to-enforced, polling every %s: %v", up.FleetPeriod, polled)

		git("rm", "-q", "-r", "drop-net-raw")
		git("commit", "-q", "-m", "remove drop-net-raw again")
		everywhere(time.Now(), "pruned again", isAdmitted)

		// The CVE drill (#15): every cluster exposed; the library's policy
		// exported into the repository and committed (its hook calls every
		// cluster's receiver); every cluster protected.
		drill := func(wantCode int, want ...string) {
			t.Helper()
			args := []string{"controls", "--cve", "CVE-2020-14386", "--kubeconfig", f.Kubeconfig}
			for i := 1; i <= 3; i++ {
				args = append(args, "--context", up.ContextName(i))
			}
			cmd := exec.Command(bouncerBin, args...)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != wantCode {
				t.Fatalf("controls --cve: exit %d, want %d\n%s", code, wantCode, out)
			}
			for _, w := range want {
				if !strings.Contains(string(out), w) {
					t.Errorf("controls --cve lacks %q:\n%s", w, out)
				}
			}
			t.Logf("bouncer controls --cve CVE-2020-14386 (exit %d):\n%s", wantCode, out)
		}
		drill(1, "3 of 3 targets exposed", "bouncer library export --policy drop-net-raw")
		if out, err := exec.Command(bouncerBin, "library", "export", "--policy", "drop-net-raw", f.Repo).CombinedOutput(); err != nil {
			t.Fatalf("library export: %v\n%s", err, out)
		}
		git("add", "-A")
		start = time.Now()
		git("commit", "-q", "-m", "drop NET_RAW everywhere (CVE-2020-14386)")
		hooked := everywhere(start, "enforced with the receiver", refused)
		t.Logf("commit-to-enforced with the receiver called: %v", hooked)
		drill(0, "Every target is protected", "K8sRequireDropNetRaw/drop-net-raw")
	})

	t.Run("a broken commit reaches no cluster; the fix does", func(t *testing.T) {
		before := git("rev-parse", "HEAD")
		template := readFile(t, "test/e2e/testdata/gitsync/template.yaml")
		broken := strings.Replace(template, "not drops_net_raw(c)", "not drops_net_raw(c", 1)
		broken = strings.ReplaceAll(broken, "k8srequiredropnetraw", "k8sbrokenfleet")
		broken = strings.Replace(broken, "K8sRequireDropNetRaw", "K8sBrokenFleet", 1)
		constraint := "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sBrokenFleet\nmetadata:\n  name: broken-fleet\nspec:\n  match:\n    kinds:\n      - apiGroups: [\"\"]\n        kinds: [\"Pod\"]\n"
		if err := os.MkdirAll(filepath.Join(f.Repo, "broken"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{"broken/template.yaml": broken, "broken/constraint.yaml": constraint} {
			if err := os.WriteFile(filepath.Join(f.Repo, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		git("add", "-A")
		git("commit", "-q", "-m", "broken template")
		everywhere(time.Now(), "the broken commit reported", func(i int) error {
			out, err := kubectlAt(i, "", "get", "policysync", up.FleetSyncName, "-n", up.Namespace, "-o", "jsonpath={.status.lastSyncedCommit} {.status.rendering.errors}{.status.source.errors}")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if !strings.HasPrefix(out, before+" ") || !strings.Contains(out, "broken/template.yaml") {
				return fmt.Errorf("want last synced %s and an error naming broken/template.yaml, have %s", before, out)
			}
			return nil
		})
		for i := 1; i <= 3; i++ {
			if out, err := kubectlAt(i, "", "get", "constrainttemplate", "k8sbrokenfleet"); err == nil {
				t.Errorf("%s: the broken commit's template was applied: %s", up.ContextName(i), out)
			}
			if err := refused(i); err != nil {
				t.Errorf("%s: enforcement stopped with the broken commit: %v", up.ContextName(i), err)
			}
		}
		git("rm", "-q", "-r", "broken")
		git("commit", "-q", "-m", "remove the broken template")
		head := git("rev-parse", "HEAD")
		everywhere(time.Now(), "the fix applied", func(i int) error {
			out, err := kubectlAt(i, "", "get", "policysync", up.FleetSyncName, "-n", up.Namespace, "-o", "jsonpath={.status.lastSyncedCommit}")
			if err != nil || out != head {
				return fmt.Errorf("last synced %q, want %s (%v)", out, head, err)
			}
			return nil
		})
	})

	t.Run("a constraint deleted by hand is restored", func(t *testing.T) {
		if out, err := kubectlAt(2, "", "delete", "k8srequiredropnetraw", "drop-net-raw"); err != nil {
			t.Fatalf("deleting the synced constraint: %v\n%s", err, out)
		}
		everywhere(time.Now(), "restored", func(i int) error {
			if out, err := kubectlAt(i, "", "get", "k8srequiredropnetraw", "drop-net-raw"); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return refused(i)
		})
	})

	t.Run("with preventDrift the delete is refused", func(t *testing.T) {
		if out, err := kubectlAt(3, "", "patch", "policysync", up.FleetSyncName, "-n", up.Namespace, "--type=merge", "-p", `{"spec":{"preventDrift":true}}`); err != nil {
			t.Fatalf("setting preventDrift: %v\n%s", err, out)
		}
		eventuallyRefused := func() error {
			out, err := kubectlAt(3, "", "delete", "k8srequiredropnetraw", "drop-net-raw", "--dry-run=server")
			if err == nil {
				return fmt.Errorf("delete admitted: %s", out)
			}
			if !strings.Contains(out, "preventDrift") {
				return fmt.Errorf("refused, but not by the drift check: %s", out)
			}
			return nil
		}
		everywhere(time.Now(), "delete refused on cluster-3", func(i int) error {
			if i != 3 {
				return nil
			}
			return eventuallyRefused()
		})
	})
}

// writeUnreachableKubeconfig names a cluster on a loopback port where
// nothing listens.
func writeUnreachableKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["gone"] = &clientcmdapi.Cluster{Server: fmt.Sprintf("https://127.0.0.1:%d", freePort(t))}
	cfg.AuthInfos["gone"] = &clientcmdapi.AuthInfo{Token: "x"}
	cfg.Contexts["gone"] = &clientcmdapi.Context{Cluster: "gone", AuthInfo: "gone"}
	cfg.CurrentContext = "gone"
	path := filepath.Join(t.TempDir(), "gone.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
