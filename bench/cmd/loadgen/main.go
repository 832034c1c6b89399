// Command loadgen measures the latency Bouncer's webhook adds to Pod
// creation on a real control plane (internal/controlplane: etcd, kube-apiserver,
// kube-controller-manager on loopback). For each rate it creates compliant
// Pods open-loop (one every 1/rate seconds, whether or not earlier creates
// have returned; latency counts from the scheduled send time, so a slow
// server cannot hide queueing) for a fixed duration, first with no webhook,
// then with a `bouncer serve` started for that rate, registered by URL
// (failurePolicy Fail) and holding the full built-in library. Pods stay Pending (no nodes); each rate uses a
// namespace of its own, deleted afterwards. Requests are bounded in number
// (rate × duration), in flight (-max-inflight) and in time (-timeout).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/internal/controlplane"
	"github.com/bouncer-policy/bouncer/internal/podgen"
	"github.com/bouncer-policy/bouncer/internal/proc"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
)

type options struct {
	bouncer     string
	policies    string
	rates       []int
	duration    time.Duration
	timeout     time.Duration
	maxInflight int
	warmup      int
	serveFlags  []string
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var o options
	var rates string
	flag.StringVar(&o.bouncer, "bouncer", "", "bouncer binary (required)")
	flag.StringVar(&o.policies, "policies", "", "directory of templates and constraints to load (required)")
	flag.StringVar(&rates, "rates", "50,100,200,400", "Pod creates per second, comma-separated")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long each rate runs")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "client timeout of one create")
	flag.IntVar(&o.maxInflight, "max-inflight", 2000, "creates in flight at most; a create beyond it counts as an error")
	flag.IntVar(&o.warmup, "warmup", 50, "creates before each measured run (not counted)")
	flag.Var((*stringList)(&o.serveFlags), "serve-flag", "extra flag for bouncer serve, e.g. -serve-flag=--cpuprofile=/tmp/serve.cpu; repeatable")
	flag.Parse()
	for _, r := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("-rates: %q", r))
		}
		o.rates = append(o.rates, n)
	}
	if o.bouncer == "" || o.policies == "" {
		fatal(errors.New("-bouncer and -policies are required"))
	}
	if err := run(o); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(1)
}

type result struct {
	phase  string
	rate   int
	sent   int
	ok     int
	errs   map[string]int
	lat    []time.Duration // successful creates
	actual float64         // achieved send rate
	// CPU seconds the process spent (utime+stime from /proc) while the
	// creates ran, from the first send to a second after the last create
	// returned (what the audit does with the new Pods included), and over
	// the whole phase (namespace, warm-up, deleting the Pods); the bouncer
	// figures stay 0 in the no-webhook phase.
	bouncerCPU, apiCPU           float64
	bouncerCPUPhase, apiCPUPhase float64
}

func (r *result) errors() int {
	n := 0
	for _, v := range r.errs {
		n += v
	}
	return n
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(p*float64(len(d))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(d) {
		i = len(d) - 1
	}
	return d[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func run(o options) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	bins, err := controlplane.EnsureBinaries(ctx, os.Stderr)
	if err != nil {
		return err
	}
	copts := controlplane.DefaultOptions()
	copts.Binaries = bins
	cluster, err := controlplane.Start(ctx, copts)
	if err != nil {
		return fmt.Errorf("starting control plane: %w", err)
	}
	defer cluster.Stop()
	cfg := cluster.RESTConfig()
	cfg.QPS, cfg.Burst = 100000, 100000 // open loop: no client-side throttling
	cfg.Timeout = o.timeout
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	apiPID := cluster.Process(controlplane.APIServer).PID()
	var results []*result
	// The two phases of a rate run back to back, with a fresh bouncer
	// serve for each: what the control plane does on its own schedule
	// (etcd compaction every 5 minutes, garbage collection) then falls on
	// either phase alike, instead of always on the later ones.
	for _, rate := range o.rates {
		r, err := measureCPU(ctx, c, o, "no-webhook", rate, apiPID, 0)
		if err != nil {
			return err
		}
		results = append(results, r)
		stop, servePID, err := startBouncer(ctx, cluster, bins.Kubectl, o)
		if err != nil {
			return err
		}
		r, err = measureCPU(ctx, c, o, "bouncer", rate, apiPID, servePID)
		stop()
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	sort.SliceStable(results, func(i, j int) bool { return results[i].phase == "no-webhook" && results[j].phase != "no-webhook" })
	report(results, o)
	return nil
}

// measureCPU runs measure and records the CPU the apiserver and, when
// servePID is not 0, bouncer serve spent meanwhile: CPU time is what a
// shared machine does not distort the way wall latency is.
func measureCPU(ctx context.Context, c kubernetes.Interface, o options, phase string, rate, apiPID, servePID int) (*result, error) {
	sample := func() (api, serve float64, err error) {
		if api, err = proc.CPUSeconds(apiPID); err != nil || servePID == 0 {
			return api, 0, err
		}
		serve, err = proc.CPUSeconds(servePID)
		return api, serve, err
	}
	api0, serve0, err := sample()
	if err != nil {
		return nil, err
	}
	r, err := measure(ctx, c, o, phase, rate, sample)
	if err != nil {
		return nil, err
	}
	api1, serve1, err := sample()
	if err != nil {
		return nil, err
	}
	r.apiCPUPhase, r.bouncerCPUPhase = api1-api0, serve1-serve0
	return r, nil
}

// perOp is CPU milliseconds per request, "" when nothing was sent.
func perOp(cpu float64, n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%.3f", cpu*1000/float64(n))
}

// measure runs one rate in a fresh namespace and deletes it afterwards.
func measure(ctx context.Context, c kubernetes.Interface, o options, phase string, rate int, sample func() (api, serve float64, err error)) (*result, error) {
	ns := fmt.Sprintf("load-%s-%d", phase, rate)
	nsObj := &corev1.Namespace{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(podgen.Namespace(0), nsObj); err != nil {
		return nil, err
	}
	nsObj.Name = ns
	nsObj.Labels["kubernetes.io/metadata.name"] = ns
	if _, err := c.CoreV1().Namespaces().Create(ctx, nsObj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	defer deleteNamespace(c, ns)
	if err := poll(ctx, 60*time.Second, func() error {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return nil, fmt.Errorf("waiting for %s/default ServiceAccount: %w", ns, err)
	}
	// Warm up connections and caches at a gentle pace.
	for i := 0; i < o.warmup; i++ {
		if _, err := c.CoreV1().Pods(ns).Create(ctx, pod(fmt.Sprintf("warm-%d", i), ns), metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("warm-up create in %s: %w", ns, err)
		}
	}
	total := int(float64(rate) * o.duration.Seconds())
	r := &result{phase: phase, rate: rate, errs: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.maxInflight)
	interval := time.Second / time.Duration(rate)
	api0, serve0, err := sample()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for i := 0; i < total; i++ {
		sched := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(sched))
		r.sent++
		select {
		case sem <- struct{}{}:
		default:
			mu.Lock()
			r.errs["dropped: too many in flight"]++
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, o.timeout)
			defer cancel()
			_, err := c.CoreV1().Pods(ns).Create(cctx, pod(fmt.Sprintf("p-%06d", i), ns), metav1.CreateOptions{})
			lat := time.Since(sched)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.errs[errClass(err)]++
				return
			}
			r.ok++
			r.lat = append(r.lat, lat)
		}(i)
	}
	r.actual = float64(r.sent) / time.Since(start).Seconds()
	wg.Wait()
	time.Sleep(time.Second) // the audit's reviews of the last Pods
	api1, serve1, err := sample()
	if err != nil {
		return nil, err
	}
	r.apiCPU, r.bouncerCPU = api1-api0, serve1-serve0
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	fmt.Fprintf(os.Stderr, "loadgen: %s %d/s: sent %d, ok %d, errors %d, p50 %s ms, p99 %s ms\n",
		phase, rate, r.sent, r.ok, r.errors(), ms(pct(r.lat, .5)), ms(pct(r.lat, .99)))
	return r, nil
}

// errClass shortens an error to its start and its end (where the cause is),
// so that errors differing only in names or ports count together.
func errClass(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:70] + " … " + s[len(s)-80:]
	}
	return s
}

func pod(name, ns string) *corev1.Pod {
	p := &corev1.Pod{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(podgen.CompliantPod(name, ns), p); err != nil {
		panic(err)
	}
	return p
}

// deleteNamespace removes the Pods, then the namespace, and waits (bounded)
// until it is gone.
func deleteNamespace(c kubernetes.Interface, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_ = c.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_ = c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	_ = poll(ctx, 3*time.Minute, func() error {
		_, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return errors.New("namespace still there")
	})
}

func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startBouncer runs `bouncer serve` as test/e2e does, loads the policies
// and waits until every constraint is enforced by it.
func startBouncer(ctx context.Context, cluster *controlplane.Cluster, kubectl string, o options) (func(), int, error) {
	port, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	probe, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	const name = "bouncer-load"
	logPath := filepath.Join(cluster.Dir, "bouncer.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(o.bouncer, append([]string{"serve",
		"--kubeconfig", cluster.Kubeconfig,
		"--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--probe-addr", fmt.Sprintf("127.0.0.1:%d", probe),
		"--webhook-url", fmt.Sprintf("https://127.0.0.1:%d", port),
		"--webhook-config-name", name,
		"--pod-name", name,
		"--failure-policy", "Fail",
		"--log-level", "warn",
		// The default drain (15 s) outlasts stop's 10 s grace, and a
		// killed serve writes no --cpuprofile.
		"--shutdown-drain", "1s",
	}, o.serveFlags...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	stop := func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
		c, err := cluster.Client()
		if err == nil {
			_ = c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
			_ = c.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), name+"-mutating", metav1.DeleteOptions{})
		}
	}
	fail := func(err error) (func(), int, error) {
		stop()
		b, _ := os.ReadFile(logPath)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		return nil, 0, fmt.Errorf("%w\nbouncer log tail:\n%s", err, b)
	}
	c, err := cluster.Client()
	if err != nil {
		return fail(err)
	}
	if err := poll(ctx, 90*time.Second, func() error {
		select {
		case <-done:
			return errors.New("bouncer exited")
		default:
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probe))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %d", resp.StatusCode)
		}
		_, err = c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		return err
	}); err != nil {
		return fail(fmt.Errorf("waiting for bouncer: %w", err))
	}
	// Templates first; constraints once their CRDs exist.
	if err := poll(ctx, 120*time.Second, func() error {
		_, err := cluster.Kubectl(ctx, "apply", "-f", o.policies)
		return err
	}); err != nil {
		return fail(fmt.Errorf("applying policies: %w", err))
	}
	want, err := countConstraints(o.policies)
	if err != nil {
		return fail(err)
	}
	if err := poll(ctx, 180*time.Second, func() error {
		out, err := cluster.Kubectl(ctx, "get", "constraints", "-o",
			`jsonpath={range .items[*]}{.status.byPod[?(@.id=="`+name+`")].enforced}{"\n"}{end}`)
		if err != nil {
			return err
		}
		n := strings.Count(string(out), "true")
		if n < want {
			return fmt.Errorf("%d of %d constraints enforced", n, want)
		}
		return nil
	}); err != nil {
		return fail(fmt.Errorf("waiting for constraints: %w", err))
	}
	fmt.Fprintf(os.Stderr, "loadgen: bouncer serving, %d constraints enforced\n", want)
	return stop, cmd.Process.Pid, nil
}

func countConstraints(dir string) (int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		n += strings.Count(string(b), "apiVersion: constraints.gatekeeper.sh/")
	}
	return n, nil
}

// report prints a markdown table and one LOADGEN line per rate for bench/run.
func report(rs []*result, o options) {
	base := map[int]*result{}
	for _, r := range rs {
		if r.phase == "no-webhook" {
			base[r.rate] = r
		}
	}
	fmt.Println("| rate (/s) | webhook | sent | ok | errors | achieved rate | p50 ms | p90 ms | p99 ms | max ms | added p50 ms | added p99 ms |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		addP50, addP99 := "", ""
		if b := base[r.rate]; r.phase != "no-webhook" && b != nil {
			addP50 = ms(pct(r.lat, .5) - pct(b.lat, .5))
			addP99 = ms(pct(r.lat, .99) - pct(b.lat, .99))
		}
		fmt.Printf("| %d | %s | %d | %d | %d | %.0f | %s | %s | %s | %s | %s | %s |\n", r.rate, r.phase, r.sent, r.ok, r.errors(), r.actual,
			ms(pct(r.lat, .5)), ms(pct(r.lat, .9)), ms(pct(r.lat, .99)), ms(pct(r.lat, 1)), addP50, addP99)
	}
	for _, r := range rs {
		for e, n := range r.errs {
			fmt.Printf("\nerrors (%s, %d/s): %d × %s\n", r.phase, r.rate, n, e)
		}
	}
	// Admissions are counted as creates sent: each sent create is one
	// review for serve (failurePolicy Fail, one webhook).
	for _, r := range rs {
		fmt.Fprintf(os.Stdout, "LOADGEN phase=%s rate=%d sent=%d ok=%d errors=%d p50=%s p90=%s p99=%s max=%s bouncer_cpu_ms_per_admission=%s apiserver_cpu_ms_per_create=%s bouncer_cpu_ms_per_admission_phase=%s apiserver_cpu_ms_per_create_phase=%s\n", r.phase, r.rate, r.sent, r.ok, r.errors(),
			ms(pct(r.lat, .5)), ms(pct(r.lat, .9)), ms(pct(r.lat, .99)), ms(pct(r.lat, 1)), perOp(r.bouncerCPU, r.sent), perOp(r.apiCPU, r.sent),
			perOp(r.bouncerCPUPhase, r.sent+o.warmup), perOp(r.apiCPUPhase, r.sent+o.warmup))
	}
	// The target's load: the highest rate run at which the control plane
	// alone keeps p99 under 50 ms; 0 when none did.
	maxRate := 0
	for rate, b := range base {
		if pct(b.lat, .99) < 50*time.Millisecond && b.errors() == 0 && rate > maxRate {
			maxRate = rate
		}
	}
	fmt.Fprintf(os.Stdout, "LOADGEN summary control_plane_max_rate=%d\n", maxRate)
}
