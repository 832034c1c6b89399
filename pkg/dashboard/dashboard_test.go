package dashboard

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/fleet"
)

const evil = `<script>alert("x")</script>`

// testFleet: prod with a deny constraint on drop-net-raw (CVE-2020-14386,
// PSS capabilities) and violations, staging with the same only in warn
// mode, and one cluster that could not be read. Names and messages carry
// markup, as user input can.
func testFleet() Fleet {
	readAt := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	audit := readAt.Add(-30 * time.Second)
	netRaw := fleet.Template{Name: "k8srequiredropnetraw", Kind: "K8sRequireDropNetRaw", Annotations: map[string]string{
		"bouncer.dev/severity": "high", "bouncer.dev/cves": "CVE-2020-14386", "bouncer.dev/pss": "baseline/capabilities-baseline"}}
	labels := fleet.Template{Name: "k8srequiredlabels", Kind: "K8sRequiredLabels", Annotations: map[string]string{"bouncer.dev/severity": "low"}}
	prod := fleet.Detail{
		Status: fleet.ClusterStatus{Name: "prod/eu " + evil, Server: "https://10.0.0.1:6443", Templates: 2,
			Syncs:       []fleet.SyncStatus{{Name: "bouncer-system/policies", Repo: "file:///repo", Commit: "0123456789abcdef", Ready: true}},
			Constraints: fleet.ByAction{Deny: 2}, Enforced: 2, Violations: fleet.ByAction{Deny: 7}, LastAudit: &audit},
		Templates: []fleet.Template{netRaw, labels},
		Constraints: []fleet.Constraint{
			{Kind: "K8sRequireDropNetRaw", Name: "drop-net-raw", Template: netRaw.Name, Action: "deny", TotalViolations: 4, Annotations: netRaw.Annotations,
				Violations: []fleet.Violation{
					{Kind: "Pod", Namespace: "shop", Name: "web-1", Message: "container web keeps NET_RAW " + evil, EnforcementAction: "deny"},
					{Kind: "Pod", Namespace: "shop", Name: "web-2", Message: "container web keeps NET_RAW", EnforcementAction: "deny"},
					{Kind: "Pod", Namespace: "batch", Name: "job-1", Message: "container job keeps NET_RAW", EnforcementAction: "deny"},
				}},
			{Kind: "K8sRequiredLabels", Name: "team " + evil, Template: labels.Name, Action: "deny", TotalViolations: 3, Annotations: labels.Annotations,
				Violations: []fleet.Violation{{Kind: "Pod", Namespace: "shop", Name: "web-1", Message: "missing label team", EnforcementAction: "deny"}}},
		},
		Exempt: []string{"bouncer-system", "kube-system"},
	}
	staging := fleet.Detail{
		Status: fleet.ClusterStatus{Name: "staging", Server: "https://10.0.0.2:6443", Templates: 1,
			Syncs:       []fleet.SyncStatus{{Name: "bouncer-system/policies", Commit: "fedcba9876543210", Reason: "InvalidCommit", Message: "commit fed: 1 error"}},
			Constraints: fleet.ByAction{Warn: 1}, Violations: fleet.ByAction{Warn: 5}},
		Templates:   []fleet.Template{netRaw},
		Constraints: []fleet.Constraint{{Kind: "K8sRequireDropNetRaw", Name: "drop-net-raw", Template: netRaw.Name, Action: "warn", TotalViolations: 5, Annotations: netRaw.Annotations}},
	}
	gone := fleet.Detail{Status: fleet.ClusterStatus{Name: "gone", Error: "dial tcp 127.0.0.1:1: connection refused"}}
	return Fleet{Clusters: []fleet.Detail{prod, staging, gone}, ReadAt: readAt}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func newTestHandler(t *testing.T, src Source) http.Handler {
	t.Helper()
	h, err := New(Options{Source: src, Now: func() time.Time { return time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPages(t *testing.T) {
	h := newTestHandler(t, Static(testFleet()))
	prod := "/clusters/" + url.PathEscape("prod/eu "+evil)
	cases := []struct {
		path string
		want []string
	}{
		{"/", []string{
			`href="` + prod + `"`, "staging", "gone", "dial tcp 127.0.0.1:1: connection refused",
			`data-field="sync">Ready<`, `data-field="sync">NotReady 1/1<`, `data-field="sync">Unreachable<`,
			"<code>0123456789ab</code>", `data-field="constraints">2/0/0<`, `data-field="enforced">2/2<`,
			`data-field="violations">7<`, `data-field="violations">5<`, "30s ago",
			"PolicySync bouncer-system/policies (): InvalidCommit: commit fed: 1 error",
			"<svg", "Violations by severity", ">high<", "PSS (v1.37)", "1/", "enforced</text>",
		}},
		{prod, []string{"K8sRequireDropNetRaw/drop-net-raw", "k8srequiredropnetraw", `data-field="violations">4<`,
			"<td>shop</td><td>3</td>", "<td>batch</td><td>1</td>", "<td>Pod shop/web-1</td><td>2</td>",
			"https://10.0.0.1:6443", "bouncer-system, kube-system"}},
		{prod + "/constraints/K8sRequireDropNetRaw/drop-net-raw", []string{`id="total">4<`, "the first 3 the audit lists",
			"Pod web-2", "container job keeps NET_RAW", "CVE-2020-14386", "baseline/capabilities-baseline"}},
		{prod + "/constraints/K8sRequiredLabels/" + url.PathEscape("team "+evil), []string{`id="total">3<`, "missing label team"}},
		{"/controls", []string{`data-control="baseline/capabilities-baseline"`, "st-enforced-with-violations\"", ">enforced-with-violations<",
			">monitored<", ">missing<", ">unreachable<", "1/", "enforced<"}},
		{"/cves", []string{`href="/cves/CVE-2020-14386"`}},
		{"/cves/cve-2020-14386", []string{"1 of 3 clusters exposed; 1 could not be read", "K8sRequireDropNetRaw/drop-net-raw", ">exposed<", ">unreachable<",
			"drop-net-raw", "bouncer library export --cve CVE-2020-14386 policies/library"}},
		{"/static/style.css", []string{".st-enforced"}},
	}
	for _, c := range cases {
		code, body := get(t, h, c.path)
		if code != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", c.path, code, body)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s lacks %q", c.path, w)
			}
		}
		if strings.Contains(body, "<script") {
			t.Errorf("GET %s: user input reached the page unescaped", c.path)
		}
		if c.path != "/static/style.css" && !strings.Contains(body, "&lt;script&gt;") && c.path != "/controls" && c.path != "/cves" && !strings.HasPrefix(c.path, "/cves/") {
			t.Errorf("GET %s: the escaped name or message is missing", c.path)
		}
	}
}

func TestCoverageCountsOnTheMatrix(t *testing.T) {
	h := newTestHandler(t, Static(testFleet()))
	_, body := get(t, h, "/controls")
	row := between(body, `<tr data-control="baseline/capabilities-baseline">`, "</tr>")
	// prod: deny with violations; staging: warn only; gone: unreachable.
	for i, w := range []string{"enforced-with-violations", "monitored", "unreachable"} {
		cells := strings.Split(row, `<td class="cell `)
		if len(cells) != 4 || !strings.Contains(cells[i+1], ">"+w+"<") {
			t.Fatalf("capabilities row, cluster %d: want %s in\n%s", i, w, row)
		}
	}
	if other := between(body, `<tr data-control="baseline/privileged">`, "</tr>"); strings.Count(other, ">missing<") != 2 {
		t.Errorf("privileged row: want missing twice\n%s", other)
	}
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.Index(s, end); j >= 0 {
		return s[:j]
	}
	return s
}

func TestNotFound(t *testing.T) {
	h := newTestHandler(t, Static(testFleet()))
	for _, p := range []string{"/clusters/nope", "/clusters/staging/constraints/K8sRequireDropNetRaw/nope",
		"/clusters/staging/constraints/Nope/drop-net-raw", "/cves/not-a-cve", "/nothing", "/clusters/" + url.PathEscape(evil)} {
		code, body := get(t, h, p)
		if code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
		if strings.Contains(body, "<script") {
			t.Errorf("GET %s: the 404 page echoes markup", p)
		}
	}
	if code, _ := get(t, h, "/clusters/staging"); code != http.StatusOK {
		t.Errorf("GET /clusters/staging: %d", code)
	}
}

func TestHeadersForbidScripts(t *testing.T) {
	h := newTestHandler(t, Static(testFleet()))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code == http.StatusOK {
		t.Error("POST / answered 200; the dashboard is read-only")
	}
}

type failingSource struct{}

func (failingSource) Snapshot(context.Context) (Fleet, error) {
	return Fleet{}, context.DeadlineExceeded
}

func TestSourceErrorIs503(t *testing.T) {
	code, body := get(t, newTestHandler(t, failingSource{}), "/")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "deadline exceeded") {
		t.Errorf("%d %s", code, body)
	}
}

func TestFleetSourceCaches(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	reads := 0
	s := &FleetSource{MaxAge: 5 * time.Second, now: func() time.Time { return now }, Exempt: []string{"bouncer-system", "kube-system"},
		read: func(context.Context, []fleet.Target) []fleet.Detail {
			reads++
			return []fleet.Detail{{Status: fleet.ClusterStatus{Name: "a", Templates: reads}, Exempt: []string{"kube-system", "x"}}}
		}}
	for range 3 {
		f, err := s.Snapshot(t.Context())
		if err != nil || f.Clusters[0].Status.Templates != 1 {
			t.Fatalf("%+v %v", f, err)
		}
		if got := strings.Join(f.Clusters[0].Exempt, ","); got != "bouncer-system,kube-system,x" {
			t.Errorf("exempt %s", got)
		}
	}
	now = now.Add(6 * time.Second)
	if f, _ := s.Snapshot(t.Context()); f.Clusters[0].Status.Templates != 2 || reads != 2 {
		t.Errorf("after MaxAge: %d reads, templates %d", reads, f.Clusters[0].Status.Templates)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	now = now.Add(6 * time.Second)
	if _, err := s.Snapshot(ctx); err == nil {
		t.Error("a cancelled read was returned")
	}
	if f, _ := s.Snapshot(t.Context()); reads != 4 || f.Clusters[0].Status.Templates != 4 {
		t.Errorf("a cancelled read was cached: %d reads", reads)
	}
}
