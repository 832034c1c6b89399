package fleet

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func writeKubeconfig(t *testing.T, current string, names ...string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	for i, n := range names {
		cfg.Clusters[n] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:" + string(rune('1'+i)) + "443"}
		cfg.AuthInfos[n] = &clientcmdapi.AuthInfo{Token: "t"}
		cfg.Contexts[n] = &clientcmdapi.Context{Cluster: n, AuthInfo: n}
	}
	cfg.CurrentContext = current
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTargets(t *testing.T) {
	kc := writeKubeconfig(t, "b", "a", "b", "c")
	names := func(ts []Target) string {
		var out []string
		for _, x := range ts {
			out = append(out, x.Name+"="+x.Config.Host)
		}
		return strings.Join(out, ",")
	}
	cases := []struct {
		contexts []string
		all      bool
		want     string
	}{
		{nil, false, "b=https://127.0.0.1:2443"},
		{[]string{"c", "a"}, false, "c=https://127.0.0.1:3443,a=https://127.0.0.1:1443"},
		{nil, true, "a=https://127.0.0.1:1443,b=https://127.0.0.1:2443,c=https://127.0.0.1:3443"},
	}
	for _, c := range cases {
		got, err := Targets([]string{kc}, c.contexts, c.all)
		if err != nil {
			t.Fatalf("%v: %v", c.contexts, err)
		}
		if names(got) != c.want {
			t.Errorf("contexts %v all %v: got %s, want %s", c.contexts, c.all, names(got), c.want)
		}
	}
	if _, err := Targets([]string{kc}, []string{"nope"}, false); err == nil || !strings.Contains(err.Error(), `no context "nope"`) {
		t.Errorf("unknown context: %v", err)
	}
	if _, err := Targets([]string{filepath.Join(t.TempDir(), "missing")}, nil, false); err == nil {
		t.Error("a missing kubeconfig is accepted")
	}
	// The same context name in two kubeconfigs stays apart.
	other := writeKubeconfig(t, "b", "b")
	got, err := Targets([]string{kc, other}, []string{"b"}, false)
	if err != nil || len(got) != 2 || got[0].Name == got[1].Name {
		t.Errorf("two kubeconfigs with context b: %v %v", got, err)
	}
}

func obj(t *testing.T, js string) unstructured.Unstructured {
	t.Helper()
	var u unstructured.Unstructured
	if err := jsonObject(js, &u); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestConstraintsAndSyncsAreCounted(t *testing.T) {
	var st ClusterStatus
	st.addConstraint(obj(t, `{"spec":{},"status":{"totalViolations":3,"auditTimestamp":"2026-12-02T10:00:00Z","byPod":[{"id":"a","enforced":true}]}}`))
	st.addConstraint(obj(t, `{"spec":{"enforcementAction":"warn"},"status":{"totalViolations":2,"auditTimestamp":"2026-12-02T10:00:05Z","byPod":[{"id":"a","enforced":false},{"id":"b","enforced":true}]}}`))
	st.addConstraint(obj(t, `{"spec":{"enforcementAction":"dryrun"},"status":{}}`))
	st.addConstraint(obj(t, `{"spec":{"enforcementAction":"scoped"}}`))
	if want := (ByAction{Deny: 1, Warn: 1, Dryrun: 1, Other: 1}); st.Constraints != want {
		t.Errorf("constraints %+v, want %+v", st.Constraints, want)
	}
	if want := (ByAction{Deny: 3, Warn: 2}); st.Violations != want {
		t.Errorf("violations %+v, want %+v", st.Violations, want)
	}
	if st.Enforced != 2 {
		t.Errorf("enforced %d, want 2", st.Enforced)
	}
	if st.LastAudit == nil || st.LastAudit.Format(time.RFC3339) != "2026-12-02T10:00:05Z" {
		t.Errorf("last audit %v", st.LastAudit)
	}

	s := syncStatus(obj(t, `{"metadata":{"namespace":"bouncer-system","name":"policies"},"spec":{"git":{"repo":"https://git.example/p.git"}},
	  "status":{"lastSyncedCommit":"abc","sync":{"objectCount":7},"rendering":{"errors":[{"code":"template","message":"x"}]},
	  "conditions":[{"type":"Reconciling","status":"False"},{"type":"Ready","status":"False","reason":"InvalidCommit","message":"commit def: 1 error"}]}}`))
	want := SyncStatus{Name: "bouncer-system/policies", Repo: "https://git.example/p.git", Commit: "abc", Reason: "InvalidCommit", Message: "commit def: 1 error", Objects: 7, Errors: 1}
	if s != want {
		t.Errorf("sync status %+v, want %+v", s, want)
	}
	st.Syncs = []SyncStatus{s}
	if st.Healthy() {
		t.Error("a cluster whose PolicySync is not Ready is healthy")
	}
	var out bytes.Buffer
	if err := PrintTable(&out, []ClusterStatus{st, {Name: "gone", Error: "dial tcp: connection refused"}}, time.Date(2026, 12, 2, 10, 1, 5, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"NotReady 1/1", "1/1/1 (+1 other)", "3/2/0", "1m0s ago", "gone", "Unreachable", "not ready: InvalidCommit: commit def: 1 error", "gone: dial tcp"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, out.String())
		}
	}
}

func TestReadReportsAnUnreachableCluster(t *testing.T) {
	kc := writeKubeconfig(t, "a", "a")
	ts, err := Targets([]string{kc}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	// Port 1443 on loopback: nothing listens there in a test.
	got := Read(t.Context(), ts)
	if len(got) != 1 || got[0].Error == "" || got[0].Healthy() {
		t.Errorf("unreachable cluster: %+v", got)
	}
	_ = os.Remove(kc)
}

func jsonObject(s string, u *unstructured.Unstructured) error {
	return json.Unmarshal([]byte(s), &u.Object)
}

func TestConstraintDetail(t *testing.T) {
	tmpl := templateInfo(obj(t, `{"metadata":{"name":"k8spspcapabilities","annotations":{"bouncer.dev/severity":"high","bouncer.dev/cves":"CVE-2020-14386","description":"x"}},
	  "spec":{"crd":{"spec":{"names":{"kind":"K8sPSPCapabilities"}}}}}`))
	if tmpl.Kind != "K8sPSPCapabilities" || tmpl.Annotations["bouncer.dev/cves"] != "CVE-2020-14386" || tmpl.Annotations["description"] != "" {
		t.Errorf("template %+v", tmpl)
	}
	c := constraintInfo(obj(t, `{"metadata":{"name":"drop-net-raw"},"spec":{"match":{"namespaces":["a"],"excludedNamespaces":["b"],"labelSelector":{}}},
	  "status":{"totalViolations":30,"violations":[{"kind":"Pod","namespace":"a","name":"p<1>","message":"keeps NET_RAW","enforcementAction":"deny"},"junk"]}}`),
		"K8sPSPCapabilities", tmpl)
	want := Constraint{Kind: "K8sPSPCapabilities", Name: "drop-net-raw", Template: "k8spspcapabilities", Action: "deny",
		Namespaces: []string{"a"}, ExcludedNamespaces: []string{"b"}, Selective: true, TotalViolations: 30,
		Violations:  []Violation{{Kind: "Pod", Namespace: "a", Name: "p<1>", Message: "keeps NET_RAW", EnforcementAction: "deny"}},
		Annotations: tmpl.Annotations}
	if got, _ := json.Marshal(c); string(got) != mustJSON(t, want) {
		t.Errorf("constraint\n%s\nwant\n%s", got, mustJSON(t, want))
	}
	if c.Severity() != "high" {
		t.Errorf("severity %q", c.Severity())
	}
	got := exemptNamespaces([]unstructured.Unstructured{
		obj(t, `{"metadata":{"name":"config","namespace":"bouncer-system"},"spec":{"match":[{"excludedNamespaces":["kube-*","x"],"processes":["*"]},{"excludedNamespaces":["audit-only"],"processes":["audit"]}]}}`),
		obj(t, `{"metadata":{"name":"other","namespace":"elsewhere"},"spec":{"match":[{"excludedNamespaces":["y"],"processes":["*"]}]}}`),
	})
	if strings.Join(got, ",") != "bouncer-system,kube-*,kube-system,x" {
		t.Errorf("exempt %v", got)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
