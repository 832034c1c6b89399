package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// firstLogLine returns the first line of the replica's JSON log whose msg
// is msg, decoded, or nil.
func (p *bouncerProcess) firstLogLine(msg string) map[string]any {
	f, err := os.Open(p.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"msg":"`+msg+`"`) {
			var v map[string]any
			if json.Unmarshal(sc.Bytes(), &v) == nil {
				return v
			}
		}
	}
	return nil
}

// TestAuditAPIServerRestartMidPass: the kube-apiserver restarts while the
// leader's first audit pass is listing (one object per page, so the pass
// spans the restart), and a Pod is deleted just before. Once the apiserver
// is back the audit completes, and constraint status and reports hold what
// a fresh `bouncer audit` pass finds: every Pod still there once, the
// deleted one nowhere.
func TestAuditAPIServerRestartMidPass(t *testing.T) {
	ctx := context.Background()
	const sys = "audit-e2e-restart-sys"
	namespaces := []string{"audit-e2e-restart-a", "audit-e2e-restart-b", "audit-e2e-restart-c"}
	const perNS = 200
	cfg := rest.CopyConfig(restConfig())
	cfg.QPS, cfg.Burst = 500, 1000
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	policy := readFile(t, "test/e2e/testdata/audit/policy.yaml")
	t.Cleanup(func() {
		_, _ = kubectl(t, policy, "delete", "--ignore-not-found", "--wait=false", "-f", "-")
		for _, ns := range append([]string{sys}, namespaces...) {
			_ = kube(t).CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}
		_, _ = kubectl(t, readFile(t, "deploy/reports/wgpolicyk8s.yaml"), "delete", "--ignore-not-found", "--wait=false", "-f", "-")
	})
	createNamespace(t, sys)
	for _, ns := range namespaces {
		createNamespace(t, ns)
	}
	// Pods first, before any webhook, none with a team label.
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= perNS*len(namespaces) {
					return
				}
				ns := namespaces[i/perNS]
				if err := createWithRetry(ctx, kc, ns, fmt.Sprintf("p%03d", i%perNS)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	applyBouncerCRDs(t)
	serve := []string{"--namespace", sys, "--leader-election-id", "audit-restart-e2e", "--install-report-crds", "--audit-report-format", "policyreport",
		"--audit-interval", "1h", "--audit-chunk-size", "1",
		"--leader-election-lease-duration", "60s", "--leader-election-renew-deadline", "50s", "--leader-election-retry-period", "1s"}
	// A replica that does not audit installs the policy, so the audited
	// one starts its first pass with every constraint loaded.
	loader := startBouncer(t, "bouncer-audit-restart", append(serve, "--audit=false")...)
	eventually(t, 60*time.Second, func() error {
		out, err := kubectl(t, policy, "apply", "-f", "-")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	loader.stop()

	p := startBouncer(t, "bouncer-audit-restart", serve...)
	eventually(t, 60*time.Second, func() error {
		if p.firstLogLine("audit starting") == nil {
			return fmt.Errorf("the audit has not started")
		}
		return nil
	})
	if err := kc.CoreV1().Pods(namespaces[0]).Delete(ctx, "p000", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	if p.firstLogLine("audit pass done") != nil {
		t.Fatal("the first pass ended before the apiserver restarted: seed more Pods")
	}
	restartAt := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := cluster.Restart(rctx, "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver restarted in %s", time.Since(restartAt).Round(100*time.Millisecond))

	// What a fresh pass finds.
	freshIn := map[string][]string{}
	freshTotal := map[string]int64{}
	for _, o := range auditJSON(t) {
		if !strings.HasPrefix(o.Namespace, "audit-e2e-restart-") {
			continue
		}
		for _, v := range o.Violations {
			freshIn[o.Namespace] = append(freshIn[o.Namespace], fmt.Sprintf("%s %s/%s fail", v.ConstraintName, o.Namespace, o.Name))
			freshTotal[v.ConstraintName]++
		}
	}
	want := int64(perNS*len(namespaces) - 1)
	if freshTotal["audit-team-deny"] != want || freshTotal["audit-team-dryrun"] != want {
		t.Fatalf("a fresh pass finds %v, want %d for each constraint", freshTotal, want)
	}

	eventually(t, 90*time.Second, func() error {
		for _, c := range []string{"audit-team-deny", "audit-team-dryrun"} {
			if total, _ := constraintAudit(t, dyn, "K8sAuditTeam", c); total != freshTotal[c] {
				return fmt.Errorf("%s: totalViolations %d, a fresh pass finds %d", c, total, freshTotal[c])
			}
		}
		for _, ns := range namespaces {
			got := reportResults(t, dyn, policyReportGVR, ns)
			wantNS := append([]string(nil), freshIn[ns]...)
			sort.Strings(wantNS)
			if err := equalOrErr("policyreport results in "+ns, got, wantNS); err != nil {
				return err
			}
		}
		return nil
	})
	done := p.firstLogLine("audit pass done")
	if done == nil {
		t.Fatal("status and reports are complete but the first pass never ended")
	}
	at, err := time.Parse(time.RFC3339Nano, done["time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if !at.After(restartAt) {
		t.Errorf("the first pass ended at %s, before the restart began (%s): the restart was not mid-pass", at, restartAt)
	}
	t.Logf("first pass (listings cut by the restart are retried after it): %v, ended %s after the restart began", done["duration"], at.Sub(restartAt).Round(100*time.Millisecond))
}

// createWithRetry creates a Pod without a team label, retrying while the
// namespace's default ServiceAccount is not there yet.
func createWithRetry(ctx context.Context, kc kubernetes.Interface, ns, name string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := kc.CoreV1().Pods(ns).Create(ctx, pod(name, ns, "nginx:1.27", nil), metav1.CreateOptions{})
		if err == nil || strings.Contains(err.Error(), "already exists") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("creating pod %s/%s: %w", ns, name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
