package controlplane

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/proc"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// testBinaries obtains the control-plane binaries. Without -short a failure
// is a test failure, not a skip: a silently skipped integration test hides
// a broken build. The first build from an empty Go build cache can exceed
// go test's default 10 minute timeout; run with -timeout 30m then.
func testBinaries(t *testing.T) Binaries {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real control planes; skipped with -short")
	}
	b, err := EnsureBinaries(t.Context(), t.Output())
	if err != nil {
		t.Fatalf("obtaining control-plane binaries: %v", err)
	}
	return b
}

func TestTwoClustersConcurrently(t *testing.T) {
	bins := testBinaries(t)
	ctx := t.Context()

	clusters := make([]*Cluster, 2)
	errs := make([]error, 2)
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range clusters {
		wg.Go(func() {
			opts := DefaultOptions()
			opts.Binaries = bins
			clusters[i], errs[i] = Start(ctx, opts)
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range clusters {
			_ = c.Stop()
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("cluster %d: %v", i, err)
		}
	}
	t.Logf("started two clusters concurrently in %s", time.Since(begin).Round(100*time.Millisecond))
	if clusters[0].URL == clusters[1].URL || clusters[0].Dir == clusters[1].Dir {
		t.Fatalf("clusters share an address or dir: %s %s, %s %s", clusters[0].URL, clusters[1].URL, clusters[0].Dir, clusters[1].Dir)
	}

	for i, c := range clusters {
		t.Run("cluster"+strconv.Itoa(i), func(t *testing.T) {
			exerciseCluster(ctx, t, c, "bouncer-test-"+strconv.Itoa(i))
		})
	}
	// Each cluster has its own etcd: cluster 0's namespace is not in 1.
	cs1, err := clusters[1].Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs1.CoreV1().Namespaces().Get(ctx, "bouncer-test-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("cluster 1 sees cluster 0's namespace (err=%v)", err)
	}

	var pids []int
	for _, c := range clusters {
		pids = append(pids, c.pids()...)
	}
	if len(pids) != 6 {
		t.Errorf("recorded %d child PIDs, want 6 (etcd, apiserver, controller-manager per cluster)", len(pids))
	}
	stopBegin := time.Now()
	for i, c := range clusters {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping cluster %d: %v", i, err)
		}
		if err := c.Stop(); err != nil {
			t.Errorf("second Stop of cluster %d: %v", i, err)
		}
	}
	t.Logf("stopped both clusters in %s", time.Since(stopBegin).Round(100*time.Millisecond))
	for _, pid := range pids {
		// Setpgid made each child a group leader: no process may be left in
		// its group either.
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still exists after Stop (kill: %v)", pid, err)
		}
	}
	for _, c := range clusters {
		if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temporary dir %s not removed (stat: %v)", c.Dir, err)
		}
	}
	assertNoChildren(t)
}

func exerciseCluster(ctx context.Context, t *testing.T, c *Cluster, ns string) {
	cs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"k": "v"}}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating configmap: %v", err)
	}

	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1.0"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	// The controller-manager's deployment controller creates the ReplicaSet.
	deadline := time.Now().Add(60 * time.Second)
	for {
		rss, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err == nil && len(rss.Items) > 0 {
			if refs := rss.Items[0].OwnerReferences; len(refs) == 0 || refs[0].Name != "web" {
				t.Errorf("ReplicaSet %s not owned by the Deployment: %v", rss.Items[0].Name, refs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ReplicaSet for the Deployment after 60s (err=%v); controller-manager log:\n%s",
				err, proc.LogTail(filepath.Join(c.Dir, "kube-controller-manager.log"), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}

	out, err := c.Kubectl(ctx, "version")
	if err != nil {
		t.Fatalf("kubectl version: %v", err)
	}
	if !strings.Contains(string(out), "Server Version: "+KubeVersion) {
		t.Errorf("kubectl version output lacks server version %s:\n%s", KubeVersion, out)
	}
	out, err = c.Kubectl(ctx, "get", "configmap", "settings", "-n", ns, "-o", "jsonpath={.data.k}")
	if err != nil || string(out) != "v" {
		t.Errorf("kubectl get configmap = %q, %v; want \"v\"", out, err)
	}
}

// A Start that fails must stop what it started and remove its temp dir.
func TestStartFailureCleansUp(t *testing.T) {
	bins := testBinaries(t)
	opts := DefaultOptions()
	opts.Binaries = bins
	opts.APIServerFlags = []string{"--no-such-flag=1"}
	before := tempDirs(t)
	c, err := Start(t.Context(), opts)
	if err == nil {
		_ = c.Stop()
		t.Fatal("Start succeeded with a bogus apiserver flag")
	}
	if !strings.Contains(err.Error(), "kube-apiserver exited early") || !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("error does not explain the failure: %v", err)
	}
	for d := range tempDirs(t) {
		if !before[d] {
			t.Errorf("failed Start left %s behind", d)
		}
	}
	assertNoChildren(t)
}

func tempDirs(t *testing.T) map[string]bool {
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "bouncer-controlplane-*"))
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, d := range m {
		set[d] = true
	}
	return set
}

// assertNoChildren fails if this test process still has child processes.
func assertNoChildren(t *testing.T) {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	me := strconv.Itoa(os.Getpid())
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// Fields after the parenthesized command name: state, ppid, ...
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == me {
			t.Errorf("child process still running: %s", strings.TrimSpace(s[:strings.LastIndexByte(s, ')')+1]))
		}
	}
}

func TestCertificates(t *testing.T) {
	ca, err := newCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	if !ca.cert.IsCA || ca.cert.KeyUsage&x509.KeyUsageCertSign == 0 || !ca.cert.BasicConstraintsValid {
		t.Errorf("CA lacks the CA bit or cert-sign usage: IsCA=%v usage=%v", ca.cert.IsCA, ca.cert.KeyUsage)
	}
	dir := t.TempDir()
	c := &Cluster{Dir: dir}
	s, err := c.writeSecrets()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAPEM) {
		t.Fatal("CAPEM does not parse")
	}
	servingPEM, err := os.ReadFile(s.servingCert)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(servingPEM)
	serving, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"127.0.0.1", "localhost", "10.0.0.1", "kubernetes.default.svc"} {
		if _, err := serving.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("serving cert not valid for %s: %v", name, err)
		}
	}
	if serving.IsCA {
		t.Error("serving cert is a CA")
	}
	saKey, err := os.ReadFile(s.saKeyPath)
	if err != nil || !bytes.Contains(saKey, []byte("RSA PRIVATE KEY")) {
		t.Errorf("service-account key is not an RSA key: %v", err)
	}
	tokens, err := os.ReadFile(s.tokenFile)
	if err != nil || !strings.Contains(string(tokens), c.token+","+adminUser+","+adminUser+",\"system:masters\"") {
		t.Errorf("token file = %q, %v", tokens, err)
	}
	for _, p := range []string{s.saKeyPath, s.servingKey} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, err %v; want 0600", p, fi.Mode().Perm(), err)
		}
	}
}

func TestFreePorts(t *testing.T) {
	seen := map[int]bool{}
	for range 5 {
		ports, err := freePorts(3)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if p <= 0 || p > 65535 || seen[p] {
				t.Fatalf("bad or repeated port %d in %v", p, ports)
			}
			seen[p] = true
		}
	}
}

func TestKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	ca, err := newCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKubeconfig(path, "https://127.0.0.1:6443", ca.CertPEM, "secret-token"); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || cfg.BearerToken != "secret-token" || !bytes.Equal(cfg.CAData, ca.CertPEM) {
		t.Errorf("kubeconfig round-trip: host %q token %q CA equal %v", cfg.Host, cfg.BearerToken, bytes.Equal(cfg.CAData, ca.CertPEM))
	}
	raw, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if raw.CurrentContext != contextName {
		t.Errorf("current-context = %q, want %q", raw.CurrentContext, contextName)
	}
}

// The build writes these embedded copies as go.mod/go.sum; they must match
// hack/kube, which is where they are edited. Fix with `go generate`.
func TestEmbeddedKubeModuleUpToDate(t *testing.T) {
	for name, embedded := range map[string][]byte{"go.mod": kubeGoMod, "go.sum": kubeGoSum} {
		want, err := os.ReadFile(filepath.Join("..", "..", "hack", "kube", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(embedded, want) {
			t.Errorf("kubemod/%s.txt differs from hack/kube/%s; run go generate ./internal/controlplane", name, name)
		}
	}
	if !bytes.Contains(kubeGoMod, []byte("k8s.io/kubernetes "+KubeVersion)) {
		t.Errorf("hack/kube/go.mod does not require k8s.io/kubernetes %s", KubeVersion)
	}
}

func TestVersionLDFlags(t *testing.T) {
	got := versionLDFlags()
	for _, want := range []string{
		"-X k8s.io/component-base/version.gitVersion=v1.37.2",
		"-X k8s.io/component-base/version.gitMajor=1",
		"-X k8s.io/component-base/version.gitMinor=37",
		"-X k8s.io/component-base/version.gitTreeState=clean",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ldflags %q lack %q", got, want)
		}
	}
}

func TestCacheDirOverride(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("BOUNCER_KUBE_CACHE", dir)
	got, err := CacheDir()
	if err != nil || got != dir {
		t.Errorf("CacheDir() = %q, %v; want %q", got, err, dir)
	}
	t.Setenv("BOUNCER_KUBE_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", dir)
	got, err = CacheDir()
	if want := filepath.Join(dir, "bouncer", "kube", KubeVersion); err != nil || got != want {
		t.Errorf("CacheDir() = %q, %v; want %q", got, err, want)
	}
}

// KUBEBUILDER_ASSETS with etcd, kube-apiserver and kubectl wins over the
// cache; a missing controller-manager comes from the cache.
func TestEnsureBinariesKubebuilderAssets(t *testing.T) {
	assets, cache := t.TempDir(), t.TempDir()
	for _, p := range []string{
		filepath.Join(assets, "etcd"), filepath.Join(assets, "kube-apiserver"), filepath.Join(assets, "kubectl"),
		filepath.Join(cache, "kube-controller-manager"),
	} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("KUBEBUILDER_ASSETS", assets)
	t.Setenv("BOUNCER_KUBE_CACHE", cache)
	b, err := EnsureBinaries(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Binaries{
		Etcd: filepath.Join(assets, "etcd"), APIServer: filepath.Join(assets, "kube-apiserver"),
		Kubectl: filepath.Join(assets, "kubectl"), ControllerManager: filepath.Join(cache, "kube-controller-manager"),
	}
	if b != want {
		t.Errorf("EnsureBinaries = %+v, want %+v", b, want)
	}
}

// TestBuildFromScratch exercises the go build path into an empty cache. It
// takes minutes, so it only runs when asked: BOUNCER_TEST_KUBE_BUILD=1.
func TestBuildFromScratch(t *testing.T) {
	if os.Getenv("BOUNCER_TEST_KUBE_BUILD") == "" {
		t.Skip("set BOUNCER_TEST_KUBE_BUILD=1 to build the control plane into an empty cache")
	}
	cache := filepath.Join(t.TempDir(), "cache")
	t.Setenv("KUBEBUILDER_ASSETS", "")
	t.Setenv("BOUNCER_KUBE_CACHE", cache)
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Minute)
	defer cancel()
	begin := time.Now()
	b, err := EnsureBinaries(ctx, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built in %s: %+v", time.Since(begin).Round(time.Second), b)
	out, err := runOut(ctx, b.Kubectl, "version", "--client")
	if err != nil || !strings.Contains(out, "Client Version: "+KubeVersion) {
		t.Errorf("kubectl version --client = %q, %v", out, err)
	}
}

func runOut(ctx context.Context, bin string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w", bin, err)
	}
	return out.String(), nil
}

// A fake go tool on PATH: it writes the binary go build -o would and
// records its arguments, so the build's sequencing and progress can be
// tested in milliseconds.
const fakeGo = `#!/bin/sh
out=""; pkg=""
while [ $# -gt 0 ]; do
	case "$1" in
	-o) out="$2"; shift ;;
	-ldflags) shift ;;
	build|-trimpath) ;;
	*) pkg="$1" ;;
	esac
	shift
done
echo "$pkg" >> "$FAKE_GO_LOG"
[ -n "$FAKE_GO_FAIL" ] && case "$pkg" in *"$FAKE_GO_FAIL") echo "compile error" >&2; exit 1 ;; esac
name=$(basename "$pkg"); case "$name" in v[0-9]*) name=$(basename "$(dirname "$pkg")") ;; esac
printf '#!/bin/sh\n' > "$out$name" && chmod +x "$out$name"
`

func withFakeGo(t *testing.T) (cache, log string) {
	t.Helper()
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	cache = filepath.Join(t.TempDir(), "cache")
	log = filepath.Join(t.TempDir(), "go.log")
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_GO_LOG", log)
	t.Setenv("KUBEBUILDER_ASSETS", "")
	t.Setenv("BOUNCER_KUBE_CACHE", cache)
	return cache, log
}

// The build names the binary it is building and builds them one at a time
// (#12 item 12: a first build showed only "still building (Nm elapsed)").
func TestBuildNamesEachBinary(t *testing.T) {
	cache, log := withFakeGo(t)
	var progress strings.Builder
	b, err := EnsureBinaries(t.Context(), &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	for i, want := range []string{"etcd (1 of 4)", "kube-apiserver (2 of 4)", "kube-controller-manager (3 of 4)", "kubectl (4 of 4)"} {
		if !strings.Contains(progress.String(), "building "+want) {
			t.Errorf("progress lacks %q (tool %d):\n%s", "building "+want, i+1, progress.String())
		}
	}
	calls, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(calls)); len(got) != 4 || got[1] != toolAPI.pkg {
		t.Errorf("go build calls: %q; want one per tool, in order", got)
	}
	want := Binaries{Etcd: filepath.Join(cache, "etcd"), APIServer: filepath.Join(cache, "kube-apiserver"),
		ControllerManager: filepath.Join(cache, "kube-controller-manager"), Kubectl: filepath.Join(cache, "kubectl")}
	if b != want {
		t.Errorf("EnsureBinaries = %+v, want %+v", b, want)
	}
}

// A failed build keeps the binaries built before it, so the next attempt
// builds only what is missing.
func TestBuildKeepsFinishedBinaries(t *testing.T) {
	cache, log := withFakeGo(t)
	t.Setenv("FAKE_GO_FAIL", "cmd/kube-controller-manager")
	if _, err := EnsureBinaries(t.Context(), io.Discard); err == nil || !strings.Contains(err.Error(), "building kube-controller-manager") {
		t.Fatalf("EnsureBinaries = %v, want the controller-manager's build error", err)
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if !isExecutable(filepath.Join(cache, name)) {
			t.Errorf("%s built before the failure is not in the cache", name)
		}
	}
	t.Setenv("FAKE_GO_FAIL", "")
	if err := os.Remove(log); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureBinaries(t.Context(), io.Discard); err != nil {
		t.Fatal(err)
	}
	calls, _ := os.ReadFile(log)
	if got := strings.Fields(string(calls)); len(got) != 2 || got[0] != toolKCM.pkg || got[1] != toolCtl.pkg {
		t.Errorf("second build ran go build for %q; want only the two missing tools", got)
	}
}

// A kept Dir keeps its certificates and token: the data in etcd and the
// kubeconfigs handed out stay valid across restarts of bouncer up.
func TestSecretsKeptInAKeptDir(t *testing.T) {
	dir := t.TempDir()
	first := &Cluster{Dir: dir}
	if _, err := first.loadOrWriteSecrets(); err != nil {
		t.Fatal(err)
	}
	second := &Cluster{Dir: dir}
	if _, err := second.loadOrWriteSecrets(); err != nil {
		t.Fatal(err)
	}
	if first.token == "" || first.token != second.token || !bytes.Equal(first.CAPEM, second.CAPEM) {
		t.Errorf("second start generated new secrets (tokens %q, %q)", first.token, second.token)
	}
	temp := &Cluster{Dir: dir, removeDir: true}
	if _, err := temp.loadOrWriteSecrets(); err != nil {
		t.Fatal(err)
	}
	if temp.token == first.token {
		t.Error("a temporary Dir reused secrets")
	}
}

// A kept Dir keeps its ports while they are free, and gets new ones when
// one is taken.
func TestPortsKeptInAKeptDir(t *testing.T) {
	dir := t.TempDir()
	first, err := (&Cluster{Dir: dir}).choosePorts()
	if err != nil {
		t.Fatal(err)
	}
	// As Stop does: the cluster that had them is gone.
	releasePorts(first)
	second, err := (&Cluster{Dir: dir}).choosePorts()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Errorf("ports %v, then %v; want them kept", first, second)
	}
	releasePorts(second)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(second[2]))
	if err != nil {
		t.Fatalf("holding port %d: %v", second[2], err)
	}
	defer l.Close()
	third, err := (&Cluster{Dir: dir}).choosePorts()
	if err != nil {
		t.Fatal(err)
	}
	if third[2] == second[2] {
		t.Errorf("kept port %d although it is taken", second[2])
	}
}

// A killed component is started again by Restart on the same ports and
// data, and a second Start on a kept Dir finds the data, address and
// admin token of the first.
func TestRestartAndKeptDir(t *testing.T) {
	bins := testBinaries(t)
	ctx := t.Context()
	opts := DefaultOptions()
	opts.Binaries, opts.Dir = bins, filepath.Join(t.TempDir(), "kept")
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	cs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Data: map[string]string{"k": "v"}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	etcd := c.Process(Etcd)
	if err := syscall.Kill(etcd.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-etcd.Done()
	if err := c.Restart(ctx, Etcd); err != nil {
		t.Fatal(err)
	}
	if p := c.Process(Etcd); p == etcd || p.Exited() {
		t.Fatal("Restart did not start a new etcd")
	}
	getKept := func(cs kubernetes.Interface) error {
		deadline := time.Now().Add(60 * time.Second)
		for {
			got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kept", metav1.GetOptions{})
			if err == nil && got.Data["k"] == "v" {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("ConfigMap not readable: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if err := getKept(cs); err != nil {
		t.Fatalf("after etcd's restart: %v", err)
	}
	url, token := c.URL, c.token
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	again, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Stop() })
	if again.URL != url || again.token != token {
		t.Errorf("second Start: URL %s token kept %v; want %s and the same token", again.URL, again.token == token, url)
	}
	cs2, err := again.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := getKept(cs2); err != nil {
		t.Fatalf("after a second Start on the kept Dir: %v", err)
	}
}
