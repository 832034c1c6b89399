package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

var (
	auditBenchPods  = flag.Int("audit-bench-pods", 0, "TestAuditBenchmark: Pods to seed (100 per namespace); 0 skips the benchmark")
	auditBenchLog   = flag.String("audit-bench-log", "", "TestAuditBenchmark: copy the audited bouncer's debug log to this file")
	auditBenchProf  = flag.String("audit-bench-cpuprofile", "", "TestAuditBenchmark: write a 10s CPU profile of the audited bouncer, taken after its first pass, to this file")
	auditBenchMem   = flag.String("audit-bench-gomemlimit", "", "TestAuditBenchmark: run the audited bouncer with this GOMEMLIMIT (e.g. 250MiB), as a deployment sets it from its memory limit")
	auditBenchFirst = flag.String("audit-bench-first-pass-cpuprofile", "", "TestAuditBenchmark: write a CPU profile of the audited bouncer from its start until its first pass is done (at most 60s) to this file")
	auditBenchHeap  = flag.String("audit-bench-heapprofile", "", "TestAuditBenchmark: write a heap profile of the audited bouncer, taken after its first pass, to this file")
)

// TestAuditBenchmark measures the first full audit pass of `bouncer serve`
// with the whole built-in library over N seeded Pods (no kubelet: they stay
// Pending), its peak RSS, and how long a deleted Pod takes to leave its
// report. A measurement, not a timed assertion: it fails only when the
// audit does not finish or finds nothing.
//
//	go test -count=1 -run TestAuditBenchmark -v ./test/e2e/ -args -audit-bench-pods=20000
func TestAuditBenchmark(t *testing.T) {
	n := *auditBenchPods
	if n == 0 {
		t.Skip("benchmark: give -audit-bench-pods=N")
	}
	ctx := context.Background()
	const sys = "audit-bench-sys"
	cfg := rest.CopyConfig(restConfig())
	cfg.QPS, cfg.Burst = 1000, 2000
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nsCount := (n + 99) / 100
	createNamespace(t, sys)
	t.Cleanup(func() {
		for i := range nsCount {
			_ = kc.CoreV1().Namespaces().Delete(ctx, fmt.Sprintf("audit-bench-%03d", i), metav1.DeleteOptions{})
		}
	})
	for i := range nsCount {
		ns := fmt.Sprintf("audit-bench-%03d", i)
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		// Pods need the default ServiceAccount; do not wait for the controller.
		if _, err := kc.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				ns := fmt.Sprintf("audit-bench-%03d", i/100)
				p := pod(fmt.Sprintf("p%05d", i), ns, "nginx:latest", map[string]string{"app": "bench"})
				for {
					_, err := kc.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
					if err == nil || apierrors.IsAlreadyExists(err) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("seeded %d Pods in %d namespaces in %s", n, nsCount, time.Since(start).Round(time.Second))

	// Install the library with a bouncer that does not audit, then measure
	// a fresh leader's first pass.
	applyBouncerCRDs(t)
	lib, err := exec.Command(bouncerBin, "library", "export").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = kubectl(t, string(lib), "delete", "--ignore-not-found", "-f", "-") })
	loader := startBouncer(t, "bouncer-bench", "--namespace", sys, "--audit=false", "--leader-election-id", "audit-bench", "--install-report-crds", "--audit-report-format", "policyreport")
	eventually(t, 120*time.Second, func() error {
		out, err := kubectl(t, string(lib), "apply", "-f", "-")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	t.Logf("peak RSS of a replica that does not audit, the library loaded: %s", peakRSS(loader.cmd.Process.Pid))
	loader.stop()
	t.Cleanup(func() {
		_, _ = kubectl(t, readFile(t, "deploy/reports/wgpolicyk8s.yaml"), "delete", "--ignore-not-found", "-f", "-")
	})

	if *auditBenchMem != "" {
		t.Setenv("GOMEMLIMIT", *auditBenchMem)
	}
	p := startBouncer(t, "bouncer-bench", "--namespace", sys, "--leader-election-id", "audit-bench", "--install-report-crds", "--audit-report-format", "policyreport", "--profiling")
	if *auditBenchLog != "" {
		t.Cleanup(func() {
			if b, err := os.ReadFile(p.log); err == nil {
				_ = os.WriteFile(*auditBenchLog, b, 0o644)
			}
		})
	}
	firstProfile := make(chan struct{})
	if *auditBenchFirst != "" {
		// The replica is ready (it serves) before its first audit pass ends:
		// profiling from here covers the pass.
		go func() {
			defer close(firstProfile)
			if err := saveURL(p.probeURL+"/debug/pprof/profile?seconds=60", *auditBenchFirst); err != nil {
				t.Logf("first-pass profile: %v", err)
			}
		}()
	} else {
		close(firstProfile)
	}
	var pass map[string]any
	eventually(t, 300*time.Second, func() error {
		if pass = p.firstLogLine("audit pass done"); pass == nil {
			return fmt.Errorf("no audit pass yet")
		}
		return nil
	})
	if *auditBenchProf != "" {
		<-firstProfile // one CPU profile at a time
		go func() {
			resp, err := http.Get(p.probeURL + "/debug/pprof/profile?seconds=10")
			if err != nil {
				t.Logf("profile: %v", err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			_ = os.WriteFile(*auditBenchProf, b, 0o644)
		}()
	}
	if *auditBenchHeap != "" {
		if err := saveURL(p.probeURL+"/debug/pprof/heap", *auditBenchHeap); err != nil {
			t.Logf("heap profile: %v", err)
		}
	}
	d, _ := time.ParseDuration(pass["duration"].(string))
	objects := pass["objects"].(float64)
	t.Logf("first full pass: %s, %.0f objects, %.0f objects/s, %v resources", d.Round(10*time.Millisecond), objects, objects/d.Seconds(), pass["resources"])
	t.Logf("peak RSS after the pass: %s", peakRSS(p.cmd.Process.Pid))
	if objects < float64(n) {
		t.Errorf("the pass evaluated %.0f objects, fewer than the %d Pods", objects, n)
	}

	// One Pod deleted: how long until its report no longer names it.
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := "audit-bench-000"
	eventually(t, 60*time.Second, func() error {
		if !reportNames(t, dyn, ns, "p00000") {
			return fmt.Errorf("p00000 not in its report yet")
		}
		return nil
	})
	t0 := time.Now()
	if err := kc.CoreV1().Pods(ns).Delete(ctx, "p00000", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	for reportNames(t, dyn, ns, "p00000") {
		if time.Since(t0) > 60*time.Second {
			t.Fatal("a deleted Pod stayed in its report for a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("a deleted Pod left its report after %s", time.Since(t0).Round(10*time.Millisecond))
	t.Logf("peak RSS at the end: %s", peakRSS(p.cmd.Process.Pid))
}

func saveURL(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

func reportNames(t *testing.T, dyn dynamic.Interface, ns, name string) bool {
	t.Helper()
	list, err := dyn.Resource(policyReportGVR).Namespace(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return false
	}
	var b []byte
	for _, it := range list.Items {
		c, _ := json.Marshal(it.Object)
		b = append(b, c...)
	}
	return strings.Contains(string(b), `"name":"`+name+`"`)
}

func peakRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "unknown"
}
