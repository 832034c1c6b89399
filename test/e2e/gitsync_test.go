package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/gitserver"
	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/gitsync"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	gitSyncNS      = "gitsync"            // where the synced policy applies
	gitSyncHome    = "bouncer-system"     // Bouncer's namespace, the PolicySync's
	gitSyncName    = "policies"           // the PolicySync
	gitToken       = "s3cret-git-token"   // the git server's
	receiverSecret = "s3cret-hook-secret" // the receiver's
)

var netRawGVR = schema.GroupVersionResource{Group: apis.ConstraintsGroup, Version: "v1beta1", Resource: "k8srequiredropnetraw"}

// gitRepo is a working clone that commits and pushes to the test's git
// server.
type gitRepo struct {
	t   *testing.T
	dir string
}

func (g *gitRepo) git(args ...string) string {
	g.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", g.dir, "-c", "user.name=e2e", "-c", "user.email=e2e@example.com"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (an empty content removes the file), commits and
// pushes, and returns the commit.
func (g *gitRepo) commit(msg string, files map[string]string) string {
	g.t.Helper()
	for name, content := range files {
		p := filepath.Join(g.dir, name)
		if content == "" {
			g.git("rm", "-q", "--ignore-unmatch", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			g.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			g.t.Fatal(err)
		}
		g.git("add", name)
	}
	g.git("commit", "-q", "--allow-empty", "-m", msg)
	g.git("push", "-q", "origin", "HEAD:main")
	return g.git("rev-parse", "HEAD")
}

// switchableProxy forwards to the git server on a fixed port and can be
// switched off and on, so "the git server is down" keeps the URL.
type switchableProxy struct {
	addr   string
	target *url.URL
	mu     sync.Mutex
	srv    *http.Server
}

func (p *switchableProxy) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.mu.Lock()
	p.srv = &http.Server{Handler: httputil.NewSingleHostReverseProxy(p.target), ReadHeaderTimeout: 5 * time.Second}
	srv := p.srv
	p.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (p *switchableProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		_ = p.srv.Close()
		p.srv = nil
	}
}

func dynClient(t *testing.T) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(restConfig())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func getPolicySync(t *testing.T) *apis.PolicySync {
	t.Helper()
	return getPolicySyncNamed(t, gitSyncName)
}

func getPolicySyncNamed(t *testing.T, name string) *apis.PolicySync {
	t.Helper()
	u, err := dynClient(t).Resource(gitsync.PolicySyncGVR).Namespace(gitSyncHome).Get(context.Background(), name, getOpts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := u.MarshalJSON()
	var ps apis.PolicySync
	if err := json.Unmarshal(b, &ps); err != nil {
		t.Fatal(err)
	}
	return &ps
}

func patchPolicySync(t *testing.T, patch string) {
	t.Helper()
	_, err := dynClient(t).Resource(gitsync.PolicySyncGVR).Namespace(gitSyncHome).Patch(context.Background(), gitSyncName, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("patching PolicySync with %s: %v", patch, err)
	}
}

func readyCondition(ps *apis.PolicySync) metav1.Condition {
	for _, c := range ps.Status.Conditions {
		if c.Type == gitsync.CondReady {
			return c
		}
	}
	return metav1.Condition{}
}

// waitSynced waits until commit is applied and Ready.
func waitSynced(t *testing.T, commit string) {
	t.Helper()
	waitSyncedNamed(t, gitSyncName, commit, 90*time.Second)
}

func waitSyncedNamed(t *testing.T, name, commit string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		ps := getPolicySyncNamed(t, name)
		if c := readyCondition(ps); ps.Status.LastSyncedCommit != commit || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("want commit %s applied and Ready, have %s, Ready %s %s: %s", commit, ps.Status.LastSyncedCommit, c.Status, c.Reason, c.Message)
		}
		return nil
	})
}

// waitSyncError waits until status reports an error of code whose text
// holds every want, and returns it.
func waitSyncError(t *testing.T, code string, want ...string) apis.SyncError {
	t.Helper()
	var found apis.SyncError
	eventually(t, 60*time.Second, func() error {
		ps := getPolicySync(t)
		if c := readyCondition(ps); c.Status != metav1.ConditionFalse {
			return fmt.Errorf("Ready is %s %s", c.Status, c.Message)
		}
		var all []apis.SyncError
		all = append(all, ps.Status.Source.Errors...)
		all = append(all, ps.Status.Rendering.Errors...)
		all = append(all, ps.Status.Sync.Errors...)
	next:
		for _, e := range all {
			if e.Code != code {
				continue
			}
			b, _ := json.Marshal(e)
			for _, w := range want {
				if !strings.Contains(string(b), w) {
					continue next
				}
			}
			found = e
			return nil
		}
		return fmt.Errorf("no %s error naming %q in status: %+v", code, want, all)
	})
	return found
}

// netRawPod keeps NET_RAW; drop turns it into a compliant one.
func netRawPod(name, ns string, drop bool) *corev1.Pod {
	p := pod(name, ns, "nginx:1.27.3", nil)
	if drop {
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}}}
	}
	return p
}

func netRawRefused(ns, name string) error {
	_, err := kubeClientFor(restConfig()).CoreV1().Pods(ns).Create(context.Background(), netRawPod(name, ns, false), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil {
		return fmt.Errorf("a pod keeping NET_RAW was admitted in %s", ns)
	}
	if !strings.Contains(err.Error(), "must drop NET_RAW") {
		return fmt.Errorf("refused for another reason: %v", err)
	}
	return nil
}

func kubeClientFor(cfg *rest.Config) kubernetes.Interface {
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		panic(err)
	}
	return c
}

// receiverClient trusts the webhook's CA as the apiserver does.
func receiverClient(t *testing.T, vwcName string) *http.Client {
	t.Helper()
	vwc, err := kube(t).AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), vwcName, getOpts)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(vwc.Webhooks[0].ClientConfig.CABundle) {
		t.Fatal("no CA in the webhook configuration")
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

func callReceiver(t *testing.T, c *http.Client, url string, header map[string]string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		t.Logf("receiver: 503 %s", strings.TrimSpace(string(b)))
	}
	return resp.StatusCode
}

// waitReceiverReady waits until the replica's receiver has loaded the
// PolicySyncs (it answers 503 until then): a call for an unknown one gets
// 404.
func waitReceiverReady(t *testing.T, c *http.Client, base string) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		if code := callReceiver(t, c, base+"/sync/"+gitSyncHome+"/no-such-policysync", nil, nil); code != http.StatusNotFound {
			return fmt.Errorf("receiver answers %d, want 404 for an unknown PolicySync", code)
		}
		return nil
	})
}

func githubSignature(body []byte, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// startGitServer serves an empty repository "policies" on loopback and
// returns a working clone that pushes to it.
func startGitServer(t *testing.T) (*gitserver.Server, *gitRepo) {
	t.Helper()
	ctx := context.Background()
	gs := &gitserver.Server{Root: t.TempDir(), Token: gitToken}
	if err := gs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gs.Close(ctx) })
	if _, err := gs.InitBare(ctx, "policies"); err != nil {
		t.Fatal(err)
	}
	work := &gitRepo{t: t, dir: t.TempDir()}
	work.git("init", "-q", "-b", "main")
	push, _ := url.Parse(gs.URL("policies"))
	push.User = url.UserPassword("git", gitToken)
	work.git("remote", "add", "origin", push.String())
	return gs, work
}

// createSyncSecrets writes the git credentials and the receiver's secret.
func createSyncSecrets(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for name, data := range map[string]map[string]string{
		"git-creds": {apis.SecretKeyUsername: "git", apis.SecretKeyToken: gitToken},
		"receiver":  {apis.SecretKeyWebhookToken: receiverSecret},
	} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: gitSyncHome}, StringData: data}
		_ = kube(t).CoreV1().Secrets(gitSyncHome).Delete(ctx, name, metav1.DeleteOptions{})
		if _, err := kube(t).CoreV1().Secrets(gitSyncHome).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// cleanupGitSync removes the PolicySync, then what it applied, while
// Bouncer still runs (its template controller removes the constraint CRD):
// the PolicySync goes first, or its drift watch would restore the template.
func cleanupGitSync(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	psyncs := dynClient(t).Resource(gitsync.PolicySyncGVR).Namespace(gitSyncHome)
	if err := psyncs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("cleanup: deleting PolicySync %s: %v", name, err)
	}
	templates := dynClient(t).Resource(schema.GroupVersionResource{Group: apis.TemplatesGroup, Version: "v1", Resource: "constrainttemplates"})
	// Deleting a CRD deletes its objects one by one: the benchmark's
	// 10,000 constraints take more than a minute.
	eventually(t, 5*time.Minute, func() error {
		if _, err := psyncs.Get(ctx, name, getOpts); !apierrors.IsNotFound(err) {
			return fmt.Errorf("PolicySync %s still there: %v", name, err)
		}
		if err := templates.Delete(ctx, "k8srequiredropnetraw", metav1.DeleteOptions{}); err == nil {
			return fmt.Errorf("template deleted; checking it stays deleted")
		} else if !apierrors.IsNotFound(err) {
			return err
		}
		if _, err := dynClient(t).Resource(netRawGVR).List(ctx, metav1.ListOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("constraint CRD still served: %v", err)
		}
		return nil
	})
	for _, sec := range []string{name, "git-creds", "receiver"} {
		if err := kube(t).CoreV1().Secrets(gitSyncHome).Delete(ctx, sec, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: deleting Secret %s: %v", sec, err)
		}
	}
}

// policySyncYAML is a PolicySync of the test's repository.
func policySyncYAML(name, repo, period string) string {
	return fmt.Sprintf(`apiVersion: sync.bouncer.dev/v1alpha1
kind: PolicySync
metadata:
  name: %s
  namespace: %s
spec:
  git:
    repo: %s
    period: %s
    auth: token
    secretRef: {name: git-creds}
  webhook:
    secretRef: {name: receiver}
`, name, gitSyncHome, repo, period)
}

// TestGitSync syncs a real git repository served over HTTP on loopback
// into the shared cluster through a PolicySync, and walks the issue's
// scenarios in order, since each builds on the policies the last left.
func TestGitSync(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, gitSyncNS)
	createNamespace(t, "gitsync-b")

	// The git server, behind a proxy that can go down and come back.
	gs, work := startGitServer(t)
	origin, _ := url.Parse(gs.URL("policies"))
	proxy := &switchableProxy{addr: "127.0.0.1:0", target: &url.URL{Scheme: "http", Host: origin.Host}}
	proxy.up(t)
	t.Cleanup(proxy.down)
	repoURL := "http://" + proxy.addr + origin.Path

	const replica = "bouncer-gitsync"
	cacheDir := t.TempDir()
	b := startBouncer(t, replica, "--sync-cache-dir", cacheDir)
	createSyncSecrets(t)
	t.Cleanup(func() { cleanupGitSync(t, gitSyncName) })
	// Polling once an hour, after a first commit with no policies: the
	// next commit can arrive only by the receiver.
	initial := work.commit("no policies yet", map[string]string{"README.md": "policies of the e2e cluster\n"})
	mustKubectl(t, policySyncYAML(gitSyncName, repoURL, "1h"), "apply", "-f", "-")
	if ps := getPolicySync(t); ps.Spec.Git.Branch != "main" || ps.Spec.Render != "auto" {
		t.Fatalf("CRD defaults not applied: branch %q render %q", ps.Spec.Git.Branch, ps.Spec.Render)
	}
	recv := receiverClient(t, replica)
	receiverURL := b.url + "/sync/" + gitSyncHome + "/" + gitSyncName
	waitSynced(t, initial)
	waitReceiverReady(t, recv, b.url)

	var commitA string
	t.Run("template and constraint in one commit are enforced", func(t *testing.T) {
		commitA = work.commit("drop NET_RAW", map[string]string{
			"policies/template.yaml":   readFile(t, "test/e2e/testdata/gitsync/template.yaml"),
			"policies/constraint.yaml": readFile(t, "test/e2e/testdata/gitsync/constraint.yaml"),
		})
		start := time.Now()
		body := []byte(`{"ref":"refs/heads/main","after":"` + commitA + `"}`)
		if code := callReceiver(t, recv, receiverURL, map[string]string{"X-Hub-Signature-256": githubSignature(body, receiverSecret), "X-GitHub-Event": "push"}, body); code != http.StatusAccepted {
			t.Fatalf("receiver with a valid GitHub signature: HTTP %d, want 202", code)
		}
		eventually(t, 60*time.Second, func() error { return netRawRefused(gitSyncNS, "keeps-net-raw") })
		t.Logf("commit-to-enforced with the receiver: %s", time.Since(start).Round(time.Millisecond))
		waitSynced(t, commitA)
		t.Logf("kubectl get psync:\n%s", mustKubectl(t, "", "get", "psync", "-n", gitSyncHome))
		if _, err := kubeClientFor(restConfig()).CoreV1().Pods(gitSyncNS).Create(ctx, netRawPod("drops-net-raw", gitSyncNS, true), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatalf("a pod dropping NET_RAW must be admitted: %v", err)
		}
		ps := getPolicySync(t)
		if ps.Status.Sync.ObjectCount != 2 || ps.Status.ObservedGeneration != ps.Generation {
			t.Errorf("status: objectCount %d (want 2), observedGeneration %d (want %d)", ps.Status.Sync.ObjectCount, ps.Status.ObservedGeneration, ps.Generation)
		}
		// The inventory lives on the members; the parent lists only kinds.
		parent, err := kube(t).CoreV1().Secrets(gitSyncHome).Get(ctx, gitSyncName, getOpts)
		if err != nil {
			t.Fatalf("ApplySet parent Secret: %v", err)
		}
		if gk := parent.Annotations[apply.AnnotationGroupKinds]; gk != "ConstraintTemplate.templates.gatekeeper.sh,K8sRequireDropNetRaw.constraints.gatekeeper.sh" {
			t.Errorf("parent lists group-kinds %q", gk)
		}
	})

	t.Run("receiver refuses bad calls", func(t *testing.T) {
		body := []byte(`{"ref":"refs/heads/main"}`)
		for name, h := range map[string]map[string]string{
			"bad signature":    {"X-Hub-Signature-256": githubSignature(body, "wrong")},
			"bad gitlab token": {"X-Gitlab-Token": "wrong"},
			"bad bearer":       {"Authorization": "Bearer wrong"},
			"no credentials":   {},
		} {
			if code := callReceiver(t, recv, receiverURL, h, body); code != http.StatusUnauthorized {
				t.Errorf("%s: HTTP %d, want 401", name, code)
			}
		}
		if code := callReceiver(t, recv, b.url+"/sync/"+gitSyncHome+"/nope", map[string]string{"Authorization": "Bearer " + receiverSecret}, body); code != http.StatusNotFound {
			t.Errorf("unknown PolicySync: HTTP %d, want 404", code)
		}
		for name, h := range map[string]map[string]string{
			"gitlab": {"X-Gitlab-Token": receiverSecret},
			"bearer": {"Authorization": "Bearer " + receiverSecret},
		} {
			if code := callReceiver(t, recv, receiverURL, h, body); code != http.StatusAccepted {
				t.Errorf("%s: HTTP %d, want 202", name, code)
			}
		}
	})

	// From here on, polling every second is the only trigger.
	patchPolicySync(t, `{"spec":{"git":{"period":"1s"}}}`)

	t.Run("polling alone applies a commit", func(t *testing.T) {
		second := strings.Replace(readFile(t, "test/e2e/testdata/gitsync/constraint.yaml"), "name: drop-net-raw", "name: drop-net-raw-b", 1)
		second = strings.Replace(second, `["gitsync"]`, `["gitsync-b"]`, 1)
		start := time.Now()
		commit := work.commit("drop NET_RAW in gitsync-b", map[string]string{"policies/constraint-b.yaml": second})
		eventually(t, 60*time.Second, func() error { return netRawRefused("gitsync-b", "keeps-net-raw") })
		t.Logf("commit-to-enforced with polling only (period 1s): %s", time.Since(start).Round(time.Millisecond))
		waitSynced(t, commit)
	})

	t.Run("a broken template keeps the whole commit out", func(t *testing.T) {
		broken := strings.Replace(readFile(t, "test/e2e/testdata/gitsync/template.yaml"), `drop[_] == "ALL"`, `drop[_] == "ALL"`+"\n          }}", 1)
		extra := strings.Replace(readFile(t, "test/e2e/testdata/gitsync/constraint.yaml"), "name: drop-net-raw", "name: drop-net-raw-extra", 1)
		good := getPolicySync(t).Status.LastSyncedCommit
		work.commit("broken rego plus a good constraint", map[string]string{"policies/template.yaml": broken, "policies/constraint-extra.yaml": extra})
		e := waitSyncError(t, "template")
		t.Logf("status error: %+v", e)
		if !strings.Contains(e.Message, "k8srequiredropnetraw") && !strings.Contains(fmt.Sprint(e.Resources), "template.yaml") {
			t.Errorf("the error names neither the template nor its file: %+v", e)
		}
		ps := getPolicySync(t)
		if ps.Status.LastSyncedCommit != good {
			t.Errorf("lastSyncedCommit moved to %s with a broken commit", ps.Status.LastSyncedCommit)
		}
		t.Logf("kubectl get psync:\n%s\nReady: %s", mustKubectl(t, "", "get", "psync", "-n", gitSyncHome), readyCondition(ps).Message)
		if !strings.Contains(readyCondition(ps).Message, "stays applied") {
			t.Errorf("Ready message does not say what stays applied: %q", readyCondition(ps).Message)
		}
		if _, err := dynClient(t).Resource(netRawGVR).Get(ctx, "drop-net-raw-extra", getOpts); !apierrors.IsNotFound(err) {
			t.Errorf("the good constraint of a broken commit was applied: %v", err)
		}
		if err := netRawRefused(gitSyncNS, "still-enforced"); err != nil {
			t.Errorf("earlier policy no longer enforced: %v", err)
		}
		fixed := work.commit("fix the rego", map[string]string{"policies/template.yaml": readFile(t, "test/e2e/testdata/gitsync/template.yaml")})
		waitSynced(t, fixed)
		if _, err := dynClient(t).Resource(netRawGVR).Get(ctx, "drop-net-raw-extra", getOpts); err != nil {
			t.Errorf("the fixing commit's constraint is not applied: %v", err)
		}
	})

	// Constraints whose template is in the commit are written without a
	// server-side dry run, because vet checks them as the apiserver would:
	// one the apiserver would refuse must still keep the whole commit out.
	t.Run("a constraint the apiserver would refuse keeps the whole commit out", func(t *testing.T) {
		bad := strings.Replace(readFile(t, "test/e2e/testdata/gitsync/constraint.yaml"), "name: drop-net-raw", "name: Drop_Net_Raw", 1)
		extra := strings.Replace(readFile(t, "test/e2e/testdata/gitsync/constraint.yaml"), "name: drop-net-raw", "name: drop-net-raw-second", 1)
		good := getPolicySync(t).Status.LastSyncedCommit
		work.commit("a constraint with an invalid name plus a good one", map[string]string{"policies/constraint-bad.yaml": bad, "policies/constraint-second.yaml": extra})
		e := waitSyncError(t, "constraint", "Drop_Net_Raw")
		t.Logf("status error: %+v", e)
		if ps := getPolicySync(t); ps.Status.LastSyncedCommit != good {
			t.Errorf("lastSyncedCommit moved to %s with a broken commit", ps.Status.LastSyncedCommit)
		}
		if _, err := dynClient(t).Resource(netRawGVR).Get(ctx, "drop-net-raw-second", getOpts); !apierrors.IsNotFound(err) {
			t.Errorf("the good constraint of a broken commit was applied: %v", err)
		}
		fixed := work.commit("drop the invalid constraint", map[string]string{"policies/constraint-bad.yaml": ""})
		waitSynced(t, fixed)
		if _, err := dynClient(t).Resource(netRawGVR).Get(ctx, "drop-net-raw-second", getOpts); err != nil {
			t.Errorf("the fixing commit's constraint is not applied: %v", err)
		}
		waitSynced(t, work.commit("remove the second constraint again", map[string]string{"policies/constraint-second.yaml": ""}))
	})
	t.Run("a refused constraint of a template the sync did not apply keeps the commit's templates out", func(t *testing.T) {
		// A template applied by hand: vet knows its kind, not its schema,
		// so only the apiserver can refuse the constraint's parameters,
		// and it must do so before the commit's new template is written.
		tpl := readFile(t, "library/disallowed-tags/template.yaml")
		mustKubectl(t, tpl, "apply", "-f", "-")
		t.Cleanup(func() { _, _ = kubectl(t, tpl, "delete", "--ignore-not-found", "-f", "-") })
		tagsGVR := schema.GroupVersionResource{Group: apis.ConstraintsGroup, Version: "v1beta1", Resource: "k8sdisallowedtags"}
		eventually(t, 60*time.Second, func() error {
			_, err := dynClient(t).Resource(tagsGVR).List(ctx, metav1.ListOptions{})
			return err
		})
		bad := "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sDisallowedTags\nmetadata:\n  name: tags-as-a-string\nspec:\n  parameters:\n    tags: latest\n"
		good := getPolicySync(t).Status.LastSyncedCommit
		work.commit("a new template plus a constraint the cluster's template refuses", map[string]string{
			"policies/labels-template.yaml": readFile(t, "library/required-labels/template.yaml"),
			"policies/tags-bad.yaml":        bad,
		})
		e := waitSyncError(t, gitsync.CodeApply, "tags-as-a-string")
		t.Logf("status error: %+v", e)
		if len(e.Resources) != 1 || e.Resources[0].File != "policies/tags-bad.yaml" || e.Resources[0].Line != 1 {
			t.Errorf("the error names %+v, want the constraint's file policies/tags-bad.yaml, line 1", e.Resources)
		}
		if ps := getPolicySync(t); ps.Status.LastSyncedCommit != good {
			t.Errorf("lastSyncedCommit moved to %s with a refused commit", ps.Status.LastSyncedCommit)
		}
		templates := dynClient(t).Resource(schema.GroupVersionResource{Group: apis.TemplatesGroup, Version: "v1", Resource: "constrainttemplates"})
		if _, err := templates.Get(ctx, "k8srequiredlabels", getOpts); !apierrors.IsNotFound(err) {
			t.Errorf("the refused commit's template was written: %v", err)
		}
		waitSynced(t, work.commit("drop both again", map[string]string{"policies/labels-template.yaml": "", "policies/tags-bad.yaml": ""}))
	})
	t.Run("drift is restored, refused with preventDrift, and prune spares others", func(t *testing.T) {
		before, err := dynClient(t).Resource(netRawGVR).Get(ctx, "drop-net-raw", getOpts)
		if err != nil {
			t.Fatal(err)
		}
		if err := dynClient(t).Resource(netRawGVR).Delete(ctx, "drop-net-raw", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() error {
			now, err := dynClient(t).Resource(netRawGVR).Get(ctx, "drop-net-raw", getOpts)
			if err != nil {
				return err
			}
			if now.GetUID() == before.GetUID() {
				return fmt.Errorf("still the old object")
			}
			return nil
		})
		eventually(t, 30*time.Second, func() error { return netRawRefused(gitSyncNS, "restored") })

		patchPolicySync(t, `{"spec":{"preventDrift":true}}`)
		alice := rest.CopyConfig(restConfig())
		alice.Impersonate = rest.ImpersonationConfig{UserName: "alice", Groups: []string{"system:masters"}}
		aliceDyn, err := dynamic.NewForConfig(alice)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() error {
			err := aliceDyn.Resource(netRawGVR).Delete(ctx, "drop-net-raw", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
			if err == nil {
				return fmt.Errorf("alice's delete was admitted")
			}
			if !strings.Contains(err.Error(), "PolicySync "+gitSyncHome+"/"+gitSyncName) || !strings.Contains(err.Error(), "commit ") {
				return fmt.Errorf("refused without naming the PolicySync and commit: %v", err)
			}
			t.Logf("alice's delete: %v", err)
			return nil
		})
		// An edit is refused as well; a constraint nobody synced is not.
		if _, err := aliceDyn.Resource(netRawGVR).Patch(ctx, "drop-net-raw", types.MergePatchType, []byte(`{"spec":{"enforcementAction":"dryrun"}}`), metav1.PatchOptions{}); err == nil {
			t.Error("alice's edit of a synced constraint was admitted")
		}
		hand := &unstructured.Unstructured{}
		hand.SetAPIVersion(apis.ConstraintsGroup + "/v1beta1")
		hand.SetKind("K8sRequireDropNetRaw")
		hand.SetName("hand-made")
		_ = unstructured.SetNestedField(hand.Object, []any{"nowhere"}, "spec", "match", "namespaces")
		if _, err := aliceDyn.Resource(netRawGVR).Create(ctx, hand, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating a constraint by hand: %v", err)
		}
		if _, err := aliceDyn.Resource(netRawGVR).Patch(ctx, "hand-made", types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"a"}}}`), metav1.PatchOptions{}); err != nil {
			t.Errorf("an edit of a constraint the sync never created was refused: %v", err)
		}

		pruned := work.commit("remove drop-net-raw-extra", map[string]string{"policies/constraint-extra.yaml": ""})
		waitSynced(t, pruned)
		if _, err := dynClient(t).Resource(netRawGVR).Get(ctx, "drop-net-raw-extra", getOpts); !apierrors.IsNotFound(err) {
			t.Errorf("a constraint removed from git was not pruned: %v", err)
		}
		if _, err := dynClient(t).Resource(netRawGVR).Get(ctx, "hand-made", getOpts); err != nil {
			t.Errorf("prune touched a constraint the sync never created: %v", err)
		}
		patchPolicySync(t, `{"spec":{"preventDrift":false}}`)
	})

	t.Run("failures are reported, nothing partial is applied, sync resumes", func(t *testing.T) {
		partial := strings.Replace(readFile(t, "test/e2e/testdata/gitsync/constraint.yaml"), "name: drop-net-raw", "name: partial", 1)
		notApplied := func(t *testing.T) {
			t.Helper()
			if _, err := dynClient(t).Resource(netRawGVR).Get(ctx, "partial", getOpts); !apierrors.IsNotFound(err) {
				t.Errorf("an object of a failing commit was applied: %v", err)
			}
			if err := netRawRefused(gitSyncNS, "enforced-meanwhile"); err != nil {
				t.Errorf("enforcement stopped: %v", err)
			}
		}
		resume := func(t *testing.T, commit string) {
			t.Helper()
			waitSynced(t, commit)
		}
		// The commit every failure must fall back to is the repository's
		// head, once applied: the status read before the sync caught up
		// with the last commit would name an older one, which the sync
		// never returns to.
		last := work.git("rev-parse", "HEAD")
		waitSynced(t, last)

		t.Run("git server down", func(t *testing.T) {
			proxy.down()
			waitSyncError(t, gitsync.CodeSourceUnreachable, "connection refused")
			notApplied(t)
			proxy.up(t)
			resume(t, last)
		})
		t.Run("wrong token", func(t *testing.T) {
			sec, _ := kube(t).CoreV1().Secrets(gitSyncHome).Get(ctx, "git-creds", getOpts)
			sec.Data[apis.SecretKeyToken] = []byte("wrong")
			if _, err := kube(t).CoreV1().Secrets(gitSyncHome).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			waitSyncError(t, gitsync.CodeSourceAuth, "authentication")
			notApplied(t)
			sec, _ = kube(t).CoreV1().Secrets(gitSyncHome).Get(ctx, "git-creds", getOpts)
			sec.Data[apis.SecretKeyToken] = []byte(gitToken)
			if _, err := kube(t).CoreV1().Secrets(gitSyncHome).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			resume(t, last)
		})
		t.Run("missing ref", func(t *testing.T) {
			patchPolicySync(t, `{"spec":{"git":{"branch":"no-such-branch"}}}`)
			waitSyncError(t, gitsync.CodeSourceRefNotFound, "no-such-branch")
			notApplied(t)
			patchPolicySync(t, `{"spec":{"git":{"branch":"main"}}}`)
			resume(t, last)
		})
		for _, c := range []struct {
			name, file, content, code, want string
		}{
			{"a file that is not YAML", "policies/broken.yaml", "kind: [unclosed\n  - x: {\n", "render", "broken.yaml"},
			{"a kustomization that fails", "policies/kustomization.yaml", "resources:\n  - missing.yaml\n", "render", "missing.yaml"},
			{"a kind outside allowedKinds", "policies/configmap.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: not-a-policy\n", "kind-not-allowed", "ConfigMap"},
		} {
			t.Run(c.name, func(t *testing.T) {
				work.commit(c.name, map[string]string{c.file: c.content, "policies/partial.yaml": partial})
				e := waitSyncError(t, c.code, c.want)
				t.Logf("status error: %+v", e)
				notApplied(t)
				last = work.commit("undo: "+c.name, map[string]string{c.file: "", "policies/partial.yaml": ""})
				resume(t, last)
			})
		}
	})

	t.Run("metrics", func(t *testing.T) {
		m := b.metrics(t)
		for _, want := range []string{
			`bouncer_gitsync_duration_seconds_count{outcome="synced",policysync="bouncer-system/policies"}`,
			`bouncer_gitsync_last_synced_timestamp_seconds{policysync="bouncer-system/policies"}`,
			`bouncer_gitsync_errors_total{code="template",policysync="bouncer-system/policies"}`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})

	t.Run("a deleted PolicySync's fetch cache is removed", func(t *testing.T) {
		clone := filepath.Join(cacheDir, gitSyncHome+"_"+gitSyncName)
		if _, err := os.Stat(clone); err != nil {
			t.Fatalf("no fetch cache while syncing: %v", err)
		}
		if err := dynClient(t).Resource(gitsync.PolicySyncGVR).Namespace(gitSyncHome).Delete(ctx, gitSyncName, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() error {
			if _, err := os.Stat(clone); !os.IsNotExist(err) {
				return fmt.Errorf("%s still there (%v)", clone, err)
			}
			return nil
		})
	})
}

var (
	gitSyncBenchObjects = flag.Int("gitsync-bench-objects", 0, "TestGitSyncBenchmark: policy objects in the repository (one template, the rest constraints); 0 skips the benchmark")
	gitSyncBenchProf    = flag.String("gitsync-bench-cpuprofile", "", "TestGitSyncBenchmark: write a CPU profile of the syncing bouncer, from start to stop, to this file")
	gitSyncBenchLog     = flag.String("gitsync-bench-log", "", "TestGitSyncBenchmark: copy the syncing bouncer's debug log (with each pass's stage timings) to this file")
	gitSyncBenchAPIProf = flag.String("gitsync-bench-apiserver-cpuprofile", "", "TestGitSyncBenchmark: write a CPU profile of kube-apiserver over the first sync's first 30 seconds to this file")
	gitSyncBenchArgs    = flag.String("gitsync-bench-serve-args", "", "TestGitSyncBenchmark: further flags for the syncing bouncer, space-separated (e.g. --manage-webhook-config=false to measure a sync without admission webhooks)")
	gitSyncBenchWorkers = flag.Int("gitsync-bench-workers", 0, "TestGitSyncBenchmark: the syncing bouncer's --sync-apply-workers; 0 keeps its default")
)

// TestGitSyncBenchmark measures commit-to-applied for a repository of N
// policy objects, then for a one-object change with the receiver, and
// shows that the ApplySet parent does not grow with N:
//
//	go test -count=1 -run TestGitSyncBenchmark -v ./test/e2e/ -args -gitsync-bench-objects=1000
func TestGitSyncBenchmark(t *testing.T) {
	n := *gitSyncBenchObjects
	if n < 2 {
		t.Skip("benchmark: give -gitsync-bench-objects=N (N >= 2)")
	}
	const name = "bench"
	createNamespace(t, gitSyncNS)
	gs, work := startGitServer(t)
	args := []string{"--audit=false", "--leader-election-id", "gitsync-bench", "--sync-cache-dir", t.TempDir()}
	if *gitSyncBenchProf != "" {
		args = append(args, "--cpuprofile", *gitSyncBenchProf)
	}
	if *gitSyncBenchWorkers > 0 {
		args = append(args, "--sync-apply-workers", fmt.Sprint(*gitSyncBenchWorkers))
	}
	args = append(args, strings.Fields(*gitSyncBenchArgs)...)
	b := startBouncer(t, "bouncer-gitsync-bench", args...)
	if *gitSyncBenchLog != "" {
		// Registered after startBouncer's cleanup, so it runs first: the
		// process still runs, and the profile is written when it stops.
		t.Cleanup(func() {
			if log, err := os.ReadFile(b.log); err != nil || os.WriteFile(*gitSyncBenchLog, log, 0o644) != nil {
				t.Errorf("copying the bouncer log to %s failed", *gitSyncBenchLog)
			}
		})
	}
	createSyncSecrets(t)
	t.Cleanup(func() { cleanupGitSync(t, name) })
	constraint := readFile(t, "test/e2e/testdata/gitsync/constraint.yaml")
	var many strings.Builder
	for i := range n - 1 {
		many.WriteString("---\n")
		many.WriteString(strings.Replace(constraint, "name: drop-net-raw", fmt.Sprintf("name: c-%05d", i), 1))
	}
	commit := work.commit("many constraints", map[string]string{
		"policies/template.yaml": readFile(t, "test/e2e/testdata/gitsync/template.yaml"),
		"policies/many.yaml":     many.String(),
	})
	if *gitSyncBenchAPIProf != "" {
		profileAPIServer(t, *gitSyncBenchAPIProf, 30*time.Second)
	}
	start, use := time.Now(), readControlPlaneUse(t)
	mustKubectl(t, policySyncYAML(name, gs.URL("policies"), "1h"), "apply", "-f", "-")
	waitSyncedNamed(t, name, commit, 30*time.Minute)
	t.Logf("%d objects: commit to applied %s", n, time.Since(start).Round(time.Millisecond))
	use.logSince(t, n)
	t.Logf("peak RSS of the syncing bouncer after the first sync: %s", peakRSS(b.cmd.Process.Pid))
	if got := getPolicySyncNamed(t, name).Status.Sync.ObjectCount; got != n {
		t.Errorf("objectCount %d, want %d", got, n)
	}
	parent, err := kube(t).CoreV1().Secrets(gitSyncHome).Get(context.Background(), name, getOpts)
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for k, v := range parent.Annotations {
		size += len(k) + len(v)
	}
	t.Logf("ApplySet parent annotations: %d bytes for %d members", size, n)
	if size > 1024 {
		t.Errorf("the parent's inventory grew to %d bytes with %d members: %v", size, n, parent.Annotations)
	}

	if strings.Contains(*gitSyncBenchArgs, "--manage-webhook-config=false") {
		t.Log("no webhook configuration, whose CA the receiver's client trusts: the one-change phase is skipped")
		return
	}
	recv := receiverClient(t, "bouncer-gitsync-bench")
	changed := strings.Replace(constraint, "name: drop-net-raw", "name: c-00000", 1)
	changed = strings.Replace(changed, `["gitsync"]`, `["gitsync", "gitsync-b"]`, 1)
	rest := strings.SplitN(many.String(), "---\n", 3)[2]
	commit = work.commit("one change", map[string]string{"policies/many.yaml": "---\n" + changed + "---\n" + rest})
	start = time.Now()
	if code := callReceiver(t, recv, b.url+"/sync/"+gitSyncHome+"/"+name, map[string]string{"Authorization": "Bearer " + receiverSecret}, nil); code != http.StatusAccepted {
		t.Fatalf("receiver: HTTP %d", code)
	}
	waitSyncedNamed(t, name, commit, 30*time.Minute)
	t.Logf("%d objects, one changed, receiver called: commit to applied %s", n, time.Since(start).Round(time.Millisecond))
	t.Logf("peak RSS of the syncing bouncer at the end: %s", peakRSS(b.cmd.Process.Pid))
}

// TestGitSyncReceiverOnFollower: the receiver works on a replica that does
// not lead; the leader's watch of the PolicySync does the fetch.
func TestGitSyncReceiverOnFollower(t *testing.T) {
	const name = "bouncer-gitsync-ha"
	createNamespace(t, gitSyncNS)
	gs, work := startGitServer(t)
	procs := map[string]*bouncerProcess{}
	for _, pod := range []string{name + "-a", name + "-b"} {
		procs[pod] = startBouncer(t, name, "--pod-name", pod, "--sync-cache-dir", t.TempDir())
	}
	createSyncSecrets(t)
	t.Cleanup(func() { cleanupGitSync(t, gitSyncName) })
	var follower *bouncerProcess
	eventually(t, 20*time.Second, func() error {
		leader := leaseHolder(t, gitSyncHome, name+"-leader")
		if procs[leader] == nil {
			return fmt.Errorf("lease held by %q", leader)
		}
		for pod, p := range procs {
			if pod != leader {
				follower = p
			}
		}
		return nil
	})
	initial := work.commit("no policies yet", map[string]string{"README.md": "x\n"})
	mustKubectl(t, policySyncYAML(gitSyncName, gs.URL("policies"), "1h"), "apply", "-f", "-")
	waitSynced(t, initial)
	commit := work.commit("drop NET_RAW", map[string]string{
		"template.yaml":   readFile(t, "test/e2e/testdata/gitsync/template.yaml"),
		"constraint.yaml": readFile(t, "test/e2e/testdata/gitsync/constraint.yaml"),
	})
	waitReceiverReady(t, receiverClient(t, name), follower.url)
	if code := callReceiver(t, receiverClient(t, name), follower.url+"/sync/"+gitSyncHome+"/"+gitSyncName, map[string]string{"X-Gitlab-Token": receiverSecret}, []byte(`{}`)); code != http.StatusAccepted {
		t.Fatalf("the follower's receiver: HTTP %d, want 202", code)
	}
	waitSynced(t, commit)
	eventually(t, 60*time.Second, func() error { return netRawRefused(gitSyncNS, "keeps-net-raw") })
}
