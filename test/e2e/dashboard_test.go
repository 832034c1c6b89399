package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// chromiumPath finds Debian's chromium; in CI (CI=true) its absence fails
// the test, since .ci/run installs it, elsewhere it skips visibly.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("BOUNCER_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is missing (%v): .ci/run installs Debian's chromium package", err)
		}
		t.Skipf("SKIP: no chromium at %s (apt-get install chromium, or set BOUNCER_CHROMIUM); CI=true makes this a failure", path)
	}
	return path
}

// artefactDir is $BOUNCER_TEST_ARTIFACTS/<test> when set, so screenshots
// outlive the run, or a temporary directory.
func artefactDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if base := os.Getenv("BOUNCER_TEST_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// browser is one headless Chromium with a fresh profile, recording every
// console message, uncaught exception and error or warning log entry of
// its page.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T, exe string) *browser {
	t.Helper()
	// The machine has no network: these flags keep Chromium from trying to
	// reach Google's services at start, which would hang or log errors.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// bouncer serve's dashboard has the webhook's certificate, signed by
		// a CA of its own; the Go client below checks it against that CA.
		chromedp.Flag("ignore-certificate-errors", true),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{ctx: ctx}
	// The first call starts the browser and must not carry a timeout (it
	// would end the browser); chromedp enables the Runtime, Log and
	// Network domains itself.
	if err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range e.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			b.problems = append(b.problems, fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " ")))
		case *runtime.EventExceptionThrown:
			b.problems = append(b.problems, "exception: "+e.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError || e.Entry.Level == cdplog.EntryLevelWarning {
				b.problems = append(b.problems, fmt.Sprintf("log %s: %s (%s)", e.Entry.Level, e.Entry.Text, e.Entry.URL))
			}
		}
	}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return b
}

// open navigates to url, sending headers, and returns the HTTP status and
// what was on the console.
func (b *browser) open(t *testing.T, url string, headers network.Headers) (int64, []string) {
	t.Helper()
	b.mu.Lock()
	b.problems = nil
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if headers == nil {
		headers = network.Headers{}
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: headers}); err != nil {
		t.Fatalf("setting headers: %v", err)
	}
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return resp.Status, append([]string(nil), b.problems...)
}

// load opens url, checks it answered 200 with nothing on the console, and
// writes a full-page screenshot to file.
func (b *browser) load(t *testing.T, url, file string, headers network.Headers) {
	t.Helper()
	status, problems := b.open(t, url, headers)
	if status != http.StatusOK {
		t.Errorf("%s: HTTP %d, want 200", url, status)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", url, p)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot of %s: %v", url, err)
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of %s: %s", url, file)
}

// text is the rendered text of the first element matching a CSS selector.
func (b *browser) text(t *testing.T, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Errorf("no text at %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// fleetStatus is the part of `bouncer fleet status -o json` the pages show.
type fleetStatus struct {
	Clusters []struct {
		Name        string
		Error       string
		Templates   int
		Constraints struct{ Deny, Warn, Dryrun int }
		Enforced    int
		Violations  struct{ Deny, Warn, Dryrun, Other int }
	}
}

// TestDashboard: violating pods exist before a deny constraint (drop
// NET_RAW, CVE-2020-14386) and a dryrun one; once the audit reports them,
// headless Chromium loads every page of `bouncer dashboard` over the
// cluster's kubeconfig with nothing on the console, sees the counts
// `bouncer fleet status -o json` reports and the matrix cells the
// constraints make, and screenshots each page. `bouncer serve
// --dashboard-addr` serves the same over HTTPS and refuses requests
// without a valid token (401) or without access (403).
func TestDashboard(t *testing.T) {
	exe := chromiumPath(t)
	ctx := context.Background()
	const sys, apps = "dash-e2e-sys", "dash-e2e-apps"
	createNamespace(t, sys)
	createNamespace(t, apps)
	netRaw := readFile(t, "library/drop-net-raw/template.yaml")
	caps := readFile(t, "library/pss-baseline-capabilities/template.yaml")
	capsDryrun := strings.Replace(readFile(t, "library/pss-baseline-capabilities/constraint.yaml"), "spec:\n", "spec:\n  enforcementAction: dryrun\n", 1)
	t.Cleanup(func() {
		for _, y := range []string{readFile(t, "library/drop-net-raw/constraint.yaml"), capsDryrun, netRaw, caps} {
			_, _ = kubectl(t, y, "delete", "--ignore-not-found", "--wait=false", "-f", "-")
		}
		for _, ns := range []string{sys, apps} {
			_ = kube(t).CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}
	})
	const violating = 3
	for i := range violating {
		if _, err := kube(t).CoreV1().Pods(apps).Create(ctx, netRawPod(fmt.Sprintf("keeps-net-raw-%d", i), apps, false), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kube(t).CoreV1().Pods(apps).Create(ctx, netRawPod("drops-net-raw", apps, true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyBouncerCRDs(t)
	dashPort := freePort(t)
	startBouncer(t, "bouncer-dashboard", "--namespace", sys, "--leader-election-id", "dashboard-e2e",
		"--audit-interval", "1h", "--audit-report-format", "none", "--dashboard-addr", fmt.Sprintf("127.0.0.1:%d", dashPort))
	mustKubectl(t, netRaw, "apply", "-f", "-")
	mustKubectl(t, caps, "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		for _, y := range []string{readFile(t, "library/drop-net-raw/constraint.yaml"), capsDryrun} {
			if out, err := kubectl(t, y, "apply", "-f", "-"); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
		}
		return nil
	})
	dyn := dynClient(t)
	// The constraint covers every namespace, so Pods other tests left on
	// the shared cluster count too: the test's own three must be among the
	// violations, and the page must show the total the API reports.
	var netRawTotal int64
	eventually(t, 90*time.Second, func() error {
		total, shown := constraintAudit(t, dyn, "K8sRequireDropNetRaw", "drop-net-raw")
		mine := 0
		for _, v := range shown {
			if strings.Contains(v, " "+apps+"/keeps-net-raw-") {
				mine++
			}
		}
		if mine != violating {
			return fmt.Errorf("drop-net-raw: totalViolations %d (%v), want this test's %d among them", total, shown, violating)
		}
		netRawTotal = total
		if total, _ := constraintAudit(t, dyn, "K8sPSSBaselineCapabilities", "pss-baseline-capabilities"); total < 0 {
			return fmt.Errorf("pss-baseline-capabilities not audited yet")
		}
		return nil
	})

	// The fleet: this cluster and one that cannot be reached.
	gone := writeUnreachableKubeconfig(t)
	fleetArgs := []string{"--kubeconfig", cluster.Kubeconfig, "--kubeconfig", gone}
	out, err := exec.Command(bouncerBin, append([]string{"fleet", "status", "-o", "json"}, fleetArgs...)...).Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("bouncer fleet status: %v (want exit code 1: a cluster is unreachable)\n%s", err, out)
	}
	var fs fleetStatus
	if err := json.Unmarshal(out, &fs); err != nil || len(fs.Clusters) != 2 || fs.Clusters[1].Name != "gone" || fs.Clusters[1].Error == "" {
		t.Fatalf("bouncer fleet status -o json: %v\n%s", err, out)
	}
	want := fs.Clusters[0]
	if want.Violations.Deny < violating {
		t.Fatalf("fleet status reports %d deny violations, want at least %d:\n%s", want.Violations.Deny, violating, out)
	}

	// bouncer dashboard over the cluster's kubeconfig, on loopback.
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	dash := exec.Command(bouncerBin, append([]string{"dashboard", "--addr", fmt.Sprintf("127.0.0.1:%d", port)}, fleetArgs...)...)
	dashLog := filepath.Join(t.TempDir(), "dashboard.log")
	logf, err := os.Create(dashLog)
	if err != nil {
		t.Fatal(err)
	}
	dash.Stdout, dash.Stderr = logf, logf
	if err := dash.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dash.Process.Signal(os.Interrupt)
		_ = dash.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(dashLog)
			t.Logf("bouncer dashboard log:\n%s", b)
		}
	})
	eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(base + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET /: %d", resp.StatusCode)
		}
		return nil
	})

	art := artefactDir(t)
	b := newBrowser(t, exe)
	name := want.Name
	row := fmt.Sprintf(`tr[data-cluster=%q]`, name)
	b.load(t, base+"/", filepath.Join(art, "fleet.png"), nil)
	for field, w := range map[string]string{
		"templates":   fmt.Sprint(want.Templates),
		"constraints": fmt.Sprintf("%d/%d/%d", want.Constraints.Deny, want.Constraints.Warn, want.Constraints.Dryrun),
		"enforced":    fmt.Sprintf("%d/%d", want.Enforced, want.Constraints.Deny+want.Constraints.Warn+want.Constraints.Dryrun),
		"violations":  fmt.Sprint(want.Violations.Deny + want.Violations.Warn + want.Violations.Dryrun + want.Violations.Other),
		"sync":        "no PolicySync",
	} {
		if got := b.text(t, row+` td[data-field=`+field+`]`); got != w {
			t.Errorf("fleet page, cluster %s, %s: %q, want %q (fleet status -o json)", name, field, got, w)
		}
	}
	if got := b.text(t, `tr[data-cluster="gone"] td[data-field=sync]`); got != "Unreachable" {
		t.Errorf("fleet page, cluster gone: sync %q, want Unreachable", got)
	}
	if got := b.text(t, `tr[data-cluster="gone"] td .error`); !strings.Contains(got, fs.Clusters[1].Error) {
		t.Errorf("fleet page, cluster gone: error %q, want %q", got, fs.Clusters[1].Error)
	}
	if got := b.text(t, "figure.chart figcaption"); !strings.Contains(got, "Violations by severity") {
		t.Errorf("first chart: %q", got)
	}

	clusterURL := base + "/clusters/" + url.PathEscape(name)
	b.load(t, clusterURL, filepath.Join(art, "cluster.png"), nil)
	if got := b.text(t, `tr[data-constraint="K8sRequireDropNetRaw/drop-net-raw"] td[data-field=violations]`); got != fmt.Sprint(netRawTotal) {
		t.Errorf("cluster page: drop-net-raw violations %q, want %d (the constraint's totalViolations)", got, netRawTotal)
	}
	if got := b.text(t, "#namespaces tbody tr"); !strings.HasPrefix(got, apps) || !strings.HasSuffix(got, fmt.Sprint(violating)) {
		t.Errorf("cluster page: top namespace %q, want %s with %d", got, apps, violating)
	}

	b.load(t, clusterURL+"/constraints/K8sRequireDropNetRaw/drop-net-raw", filepath.Join(art, "constraint.png"), nil)
	if got := b.text(t, "#total"); got != fmt.Sprint(netRawTotal) {
		t.Errorf("constraint page: total %q, want %d", got, netRawTotal)
	}
	if got := b.text(t, "#violations tbody"); !strings.Contains(got, "keeps-net-raw-0") || strings.Contains(got, "drops-net-raw") {
		t.Errorf("constraint page violations:\n%s", got)
	}

	b.load(t, base+"/controls", filepath.Join(art, "controls.png"), nil)
	for _, c := range []struct{ standard, control, want string }{
		{"cis", "5.2.8", "enforced-with-violations"},           // drop-net-raw: deny, every namespace but kube-system
		{"mitre", "T1611", "enforced-with-violations"},         // the same template
		{"pss", "baseline/capabilities-baseline", "monitored"}, // only the dryrun constraint
		{"pss", "baseline/privileged", "missing"},              // nothing
	} {
		// Columns: control, title, then one per cluster in fleet order.
		sel := fmt.Sprintf(`table[data-standard=%q] tr[data-control=%q] td:nth-of-type(%%d)`, c.standard, c.control)
		if got := b.text(t, fmt.Sprintf(sel, 3)); got != c.want {
			t.Errorf("controls matrix %s %s, %s: %q, want %q", c.standard, c.control, name, got, c.want)
		}
		if got := b.text(t, fmt.Sprintf(sel, 4)); got != "unreachable" {
			t.Errorf("controls matrix %s %s, gone: %q, want unreachable", c.standard, c.control, got)
		}
	}

	b.load(t, base+"/cves/CVE-2020-14386", filepath.Join(art, "cve.png"), nil)
	if got := b.text(t, "#verdict"); got != "No cluster read is exposed; 1 could not be read" {
		t.Errorf("CVE verdict %q", got)
	}
	if got := b.text(t, "#cve-clusters tbody tr"); !strings.Contains(got, "protected") || !strings.Contains(got, "K8sRequireDropNetRaw/drop-net-raw") ||
		strings.Contains(got, "K8sPSSBaselineCapabilities") {
		t.Errorf("CVE page: %q, want protected by drop-net-raw only (the dryrun constraint does not protect)", got)
	}
	if got := b.text(t, "#cve-policies"); !strings.Contains(got, "drop-net-raw") {
		t.Errorf("CVE page names no library policy: %q", got)
	}

	// bouncer serve --dashboard-addr: HTTPS, tokens checked.
	serveURL := fmt.Sprintf("https://127.0.0.1:%d", dashPort)
	vwc, err := kube(t).AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "bouncer-dashboard", getOpts)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(vwc.Webhooks[0].ClientConfig.CABundle) {
		t.Fatal("no CA in the webhook configuration")
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if _, err := kube(t).CoreV1().ServiceAccounts(apps).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := kube(t).CoreV1().ServiceAccounts(apps).CreateToken(ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, serveURL+"/", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	eventually(t, 30*time.Second, func() error {
		if code, body := get(restConfig().BearerToken); code != http.StatusOK || !strings.Contains(body, "in-cluster") {
			return fmt.Errorf("admin token: %d %.200s", code, body)
		}
		return nil
	})
	for _, c := range []struct {
		what, token string
		code        int
		body        string
	}{
		{"no token", "", http.StatusUnauthorized, "send a Kubernetes bearer token"},
		{"a forged token", "not-a-token", http.StatusUnauthorized, "the token is not valid"},
		{"a ServiceAccount without access", tr.Status.Token, http.StatusForbidden, `"system:serviceaccount:` + apps + `:nobody" may not get constrainttemplates`},
	} {
		if code, body := get(c.token); code != c.code || !strings.Contains(body, c.body) || strings.Contains(body, "in-cluster") {
			t.Errorf("serve's dashboard with %s: %d %q, want %d with %q and no page", c.what, code, body, c.code, c.body)
		}
	}
	// In the browser: with the admin token every page loads; without one,
	// the refusal is what it shows.
	auth := network.Headers{"Authorization": "Bearer " + restConfig().BearerToken}
	b.load(t, serveURL+"/", filepath.Join(art, "serve-fleet.png"), auth)
	if got := b.text(t, `tr[data-cluster="in-cluster"] td[data-field=violations]`); got != fmt.Sprint(want.Violations.Deny+want.Violations.Warn+want.Violations.Dryrun+want.Violations.Other) {
		t.Errorf("serve's dashboard: violations %q", got)
	}
	// serve knows the namespaces it exempts; no Config records them.
	b.load(t, serveURL+"/clusters/"+url.PathEscape("in-cluster"), filepath.Join(art, "serve-cluster.png"), auth)
	if got := b.text(t, "#exempt"); !strings.Contains(got, sys) || !strings.Contains(got, "kube-system") {
		t.Errorf("serve's dashboard: exempt namespaces %q, want %s and kube-system", got, sys)
	}
	status, _ := b.open(t, serveURL+"/controls", nil)
	if body := b.text(t, "body"); status != http.StatusUnauthorized || !strings.Contains(body, "Unauthorized") || strings.Contains(body, "enforced") {
		t.Errorf("the browser without a token: HTTP %d, %q", status, body)
	}
	t.Logf("screenshots in %s", art)
}
