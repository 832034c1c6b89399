package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// leaseHolder returns the pod name holding a Lease (identities are
// <pod>_<suffix>), or "".
func leaseHolder(t *testing.T, namespace, name string) string {
	t.Helper()
	l, err := kube(t).CoordinationV1().Leases(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	pod, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	return pod
}

// TestLeaderElectionFailover: two replicas share a Lease; killing the
// leader (SIGKILL, so the lease is not released) hands the singleton work to
// the other once the lease expires: a template created after the kill gets
// its constraint CRD.
func TestLeaderElectionFailover(t *testing.T) {
	const name = "bouncer-le"
	lease := []string{"--leader-election-lease-duration", "4s", "--leader-election-renew-deadline", "3s", "--leader-election-retry-period", "500ms"}
	procs := map[string]*bouncerProcess{
		name + "-a": startBouncer(t, name, append([]string{"--pod-name", name + "-a"}, lease...)...),
		name + "-b": startBouncer(t, name, append([]string{"--pod-name", name + "-b"}, lease...)...),
	}
	var leader string
	eventually(t, 20*time.Second, func() error {
		if leader = leaseHolder(t, "bouncer-system", name+"-leader"); procs[leader] == nil {
			return fmt.Errorf("lease held by %q", leader)
		}
		return nil
	})
	// Only the leader writes the webhook configuration: the replica that
	// became ready last must not have pointed it at itself.
	time.Sleep(2 * time.Second)
	vwc, err := kube(t).AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := vwc.Webhooks[0].ClientConfig.URL; u == nil || !strings.HasPrefix(*u, procs[leader].url) {
		t.Fatalf("webhook configuration points at %v, want the leader %s (%s)", u, leader, procs[leader].url)
	}
	killed := time.Now()
	_ = procs[leader].cmd.Process.Kill()
	<-procs[leader].done

	tmpl := strings.NewReplacer("k8sdisallowedtags", "k8sleadercheck", "K8sDisallowedTags", "K8sLeaderCheck").Replace(readFile(t, disallowedTagsTemplate))
	mustKubectl(t, tmpl, "apply", "-f", "-")
	t.Cleanup(func() { _, _ = kubectl(t, "", "delete", "constrainttemplate", "k8sleadercheck", "--ignore-not-found") })
	eventually(t, 30*time.Second, func() error {
		out, err := kubectl(t, "", "get", "crd", "k8sleadercheck.constraints.gatekeeper.sh", "-o", `jsonpath={.status.conditions[?(@.type=="Established")].status}`)
		if err != nil || strings.TrimSpace(out) != "True" {
			return fmt.Errorf("constraint CRD not established: %v %s", err, out)
		}
		return nil
	})
	took := time.Since(killed)
	now := leaseHolder(t, "bouncer-system", name+"-leader")
	if now == leader || procs[now] == nil {
		t.Fatalf("lease held by %q after %s was killed", now, leader)
	}
	t.Logf("leader %s killed; %s took over and generated the new template's CRD %s later (lease duration 4s)", leader, now, took.Round(100*time.Millisecond))
}

// replicaSet runs Bouncer replicas behind one Service on test hosts, and
// keeps the Service's EndpointSlice listing exactly the ready ones, as the
// kubelet's readiness probes and the endpoint controller do in a cluster.
type replicaSet struct {
	t         *testing.T
	namespace string
	port      int32
	names     []string
	extra     []string

	mu    sync.Mutex
	procs []*bouncerProcess
}

func (rs *replicaSet) start(i int) {
	p := startReplica(rs.t, rs.names[i], replicaIPs[i], rs.port, rs.namespace, rs.extra...)
	rs.mu.Lock()
	rs.procs[i] = p
	rs.mu.Unlock()
}

func (rs *replicaSet) proc(i int) *bouncerProcess {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.procs[i]
}

// probeLoop polls every replica's /readyz every 100ms until ctx ends.
func (rs *replicaSet) probeLoop(ctx context.Context) {
	client := &http.Client{Timeout: 300 * time.Millisecond}
	var last []string
	for ctx.Err() == nil {
		var ready []string
		for i := range rs.names {
			p := rs.proc(i)
			if p == nil {
				continue
			}
			resp, err := client.Get(p.probeURL + "/readyz")
			if err == nil {
				if resp.StatusCode == http.StatusOK {
					ready = append(ready, replicaIPs[i])
				}
				resp.Body.Close()
			}
		}
		if !slices.Equal(ready, last) {
			setEndpoints(rs.t, rs.namespace, rs.port, ready)
			last = ready
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// createOutcome is one create of the load stream.
type createOutcome struct {
	violating bool
	err       error // the final error
	retries   int   // webhook-call failures retried, as a controller would
	latency   time.Duration
	at        time.Duration
}

// stream creates Pods at rate per second for d, half of them violating
// (nginx:latest), runs disrupt on its own goroutine once at has passed, and
// returns every outcome. Creates refused because the apiserver could not
// call the webhook at all are retried up to 5 times, as controllers retry;
// anything else is final.
func stream(ctx context.Context, t *testing.T, ns, prefix string, rate int, d, at time.Duration, disrupt func()) []createOutcome {
	cfg := rest.CopyConfig(restConfig())
	cfg.QPS, cfg.Burst = float32(4*rate), 4*rate
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := int(d.Seconds()) * rate
	out := make([]createOutcome, n)
	var wg sync.WaitGroup
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	disruption := time.AfterFunc(at, disrupt)
	defer disruption.Stop()
	for i := range n {
		<-tick.C
		wg.Go(func() {
			violating := i%2 == 1
			image := "nginx:1.27.3"
			if violating {
				image = "nginx:latest"
			}
			o := createOutcome{violating: violating, at: time.Since(start)}
			p := pod(fmt.Sprintf("%s-%d", prefix, i), ns, image, nil)
			t0 := time.Now()
			for {
				_, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
				o.err = err
				if err == nil || !strings.Contains(err.Error(), "failed calling webhook") || o.retries == 5 || violating {
					break
				}
				o.retries++
				time.Sleep(200 * time.Millisecond)
			}
			o.latency = time.Since(t0)
			out[i] = o
		})
	}
	wg.Wait()
	return out
}

// summarize checks the promise for a stream: every compliant create
// succeeded, every violating one was refused, nothing violating stored. It
// returns the number of compliant creates that needed a retry.
func summarize(t *testing.T, ns, name string, outs []createOutcome) int {
	t.Helper()
	retried := 0
	var lat []time.Duration
	for i, o := range outs {
		lat = append(lat, o.latency)
		retried += min(o.retries, 1)
		switch {
		case !o.violating && o.err != nil:
			t.Errorf("%s: compliant create %d (at %s) failed: %v", name, i, o.at.Round(time.Millisecond), o.err)
		case o.violating && o.err == nil:
			t.Errorf("%s: violating create %d (at %s) was admitted", name, i, o.at.Round(time.Millisecond))
		case o.violating && !strings.Contains(o.err.Error(), "[no-latest]") && !strings.Contains(o.err.Error(), "failed calling webhook"):
			t.Errorf("%s: violating create %d refused for another reason: %v", name, i, o.err)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))].Round(100 * time.Microsecond) }
	t.Logf("%s: %d creates, latency p50 %s p99 %s max %s; %d compliant creates retried after a failed webhook call", name, len(outs), pct(0.5), pct(0.99), lat[len(lat)-1].Round(time.Millisecond), retried)
	pods, err := kube(t).CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Spec.Containers[0].Image == "nginx:latest" {
			t.Errorf("%s: violating pod %s was stored", name, p.Name)
		}
	}
	return retried
}

// TestFailoverZeroFailedAdmissions: two replicas behind a Service with
// failurePolicy Fail under a steady stream of creates (60/s for 30s, half
// violating). A rolling restart with SIGTERM (readiness off, drain, stop)
// fails no create. A SIGKILL cannot drain: calls routed to the dead replica
// before its endpoint is removed fail at the apiserver, and are retried as
// controllers retry; after that every compliant create succeeds, every
// violating one is refused and nothing violating is stored.
func TestFailoverZeroFailedAdmissions(t *testing.T) {
	setupTestHosts(t)
	const sys = "bouncer-ha"
	createNamespace(t, sys)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := int32(freePort(t))
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "bouncer-webhook", Namespace: sys},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(port)}}},
	}
	if _, err := kube(t).CoreV1().Services(sys).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rs := &replicaSet{t: t, namespace: sys, port: port, names: []string{"bouncer-ha-0", "bouncer-ha-1"},
		procs: make([]*bouncerProcess, 2), extra: []string{"--shutdown-drain", "3s"}}
	probeCtx, stopProbes := context.WithCancel(ctx)
	var probes sync.WaitGroup
	probes.Go(func() { rs.probeLoop(probeCtx) })
	defer func() { stopProbes(); probes.Wait() }()
	rs.start(0)
	rs.start(1)
	mustKubectl(t, readFile(t, disallowedTagsTemplate), "apply", "-f", "-")
	t.Cleanup(func() {
		_, _ = kubectl(t, "", "delete", "constrainttemplate", "k8sdisallowedtags", "--ignore-not-found")
	})
	eventually(t, 30*time.Second, func() error {
		_, err := kubectl(t, readFile(t, disallowedTagsConstraint), "apply", "-f", "-")
		return err
	})
	waitEnforced(t, "K8sDisallowedTags", "no-latest", "bouncer-ha-0")
	waitEnforced(t, "K8sDisallowedTags", "no-latest", "bouncer-ha-1")

	t.Run("rolling-restart-sigterm", func(t *testing.T) {
		const ns = "ha-rolling"
		createNamespace(t, ns)
		outs := stream(ctx, t, ns, "roll", 60, 30*time.Second, 5*time.Second, func() {
			for i := range 2 {
				p := rs.proc(i)
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				<-p.done
				rs.start(i)
			}
		})
		if retried := summarize(t, ns, "rolling restart", outs); retried != 0 {
			t.Errorf("rolling restart: %d compliant creates hit a failed webhook call; a graceful restart must fail none", retried)
		}
	})
	t.Run("kill-9", func(t *testing.T) {
		const ns = "ha-kill"
		createNamespace(t, ns)
		outs := stream(ctx, t, ns, "kill", 60, 30*time.Second, 8*time.Second, func() {
			p := rs.proc(0)
			_ = p.cmd.Process.Kill()
			<-p.done
			time.Sleep(4 * time.Second)
			rs.start(0)
		})
		summarize(t, ns, "kill -9", outs)
	})
}
