package e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/controlplane"
	"github.com/bouncer-policy/bouncer/internal/proc"
)

// controlPlaneUse is what the apiserver and etcd did between two readings:
// the CPU each spent and the requests the apiserver served, by verb and
// resource. Benchmarks report it beside wall time because on this machine
// the control plane, not Bouncer, is what a big sync waits for.
type controlPlaneUse struct {
	cpu      map[string]float64 // component name → CPU seconds so far
	requests map[string]float64 // "VERB resource[/subresource]" → count so far
}

func readControlPlaneUse(t *testing.T) controlPlaneUse {
	t.Helper()
	u := controlPlaneUse{cpu: map[string]float64{}}
	for _, name := range []string{controlplane.APIServer, controlplane.Etcd} {
		p := cluster.Process(name)
		if p == nil {
			t.Fatalf("no %s process", name)
		}
		s, err := proc.CPUSeconds(p.PID())
		if err != nil {
			t.Fatal(err)
		}
		u.cpu[name] = s
	}
	body, err := kube(t).CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("reading the apiserver's metrics: %v", err)
	}
	u.requests, err = requestCounts(string(body))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// requestCounts sums apiserver_request_total over codes, scopes and
// components, by verb and resource.
func requestCounts(metrics string) (map[string]float64, error) {
	counts := map[string]float64{}
	for _, line := range strings.Split(metrics, "\n") {
		rest, ok := strings.CutPrefix(line, "apiserver_request_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("apiserver metrics: malformed sample %q", line)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("apiserver metrics: sample %q: %w", line, err)
		}
		l := map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			k, val, _ := strings.Cut(kv, "=")
			l[k] = strings.Trim(val, `"`)
		}
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		counts[key] += v
	}
	if len(counts) == 0 {
		return nil, fmt.Errorf("apiserver metrics: no apiserver_request_total samples")
	}
	return counts, nil
}

// logSince logs what the control plane did since before, per object for n
// objects: CPU of each component and the busiest request kinds.
func (before controlPlaneUse) logSince(t *testing.T, n int) {
	t.Helper()
	after := readControlPlaneUse(t)
	for _, name := range []string{controlplane.APIServer, controlplane.Etcd} {
		d := after.cpu[name] - before.cpu[name]
		t.Logf("%s: %.1f CPU s, %.2f ms per object", name, d, 1000*d/float64(n))
	}
	type kind struct {
		key string
		n   float64
	}
	var kinds []kind
	total := 0.0
	for k, v := range after.requests {
		if d := v - before.requests[k]; d > 0 {
			kinds = append(kinds, kind{k, d})
			total += d
		}
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i].n > kinds[j].n })
	t.Logf("apiserver: %.0f requests, %.2f per object", total, total/float64(n))
	for i, k := range kinds {
		if i == 8 || k.n < float64(n)/100 {
			break
		}
		t.Logf("  %-50s %8.0f  %.2f per object", k.key, k.n, k.n/float64(n))
	}
}

// profileAPIServer starts a CPU profile of kube-apiserver (its
// /debug/pprof, which the cluster's admin may read) over the next d and
// writes it to file; the test waits for it before it ends.
func profileAPIServer(t *testing.T, file string, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		body, err := kube(t).CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
			Param("seconds", fmt.Sprint(int(d.Seconds()))).Timeout(d + time.Minute).DoRaw(context.Background())
		if err == nil {
			err = os.WriteFile(file, body, 0o644)
		}
		if err != nil {
			t.Errorf("profiling kube-apiserver: %v", err)
		}
	}()
	t.Cleanup(func() { <-done })
}
