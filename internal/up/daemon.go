package up

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/internal/controlplane"
	"github.com/bouncer-policy/bouncer/internal/proc"
	"github.com/bouncer-policy/bouncer/library"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// StarterPolicies are the library policies `bouncer up` installs: no latest
// or untagged images, no privileged containers, NET_RAW dropped.
var StarterPolicies = []string{"disallowed-tags", "pss-baseline-privileged", "drop-net-raw"}

// Namespace is the namespace `bouncer serve` runs for under `bouncer up`
// (its CA Secret; exempt from review).
const Namespace = "bouncer-system"

// fieldManager owns what the daemon applies (the starter policies).
const fieldManager = "bouncer-up"

// DaemonOptions configure Foreground.
type DaemonOptions struct {
	// Self is the bouncer executable, run as `bouncer serve`.
	Self string
	// Dir is the state directory.
	Dir string
	Log *slog.Logger
	// SyncRepo, when set, is the git URL the cluster syncs its policies
	// from (a fleet); the starter policies are then the repository's.
	SyncRepo string
}

// Foreground runs the daemon: it builds or finds the control-plane
// binaries, starts the control plane on the data kept in Dir, runs
// `bouncer serve` as a child, applies the starter policies and then
// supervises every child until ctx ends. Progress lines go to standard
// output (`bouncer up` shows those starting with "up: ").
func Foreground(ctx context.Context, o DaemonOptions) (err error) {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	lock, err := lockDaemon(o.Dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	d := &daemon{dir: o.Dir, self: o.Self, log: o.Log,
		state: &State{PID: os.Getpid(), Started: time.Now(), Phase: PhaseBuilding}}
	d.save()
	defer func() {
		if err != nil {
			d.update(func(s *State) { s.Error, s.Phase, s.Ready = err.Error(), PhaseFailed, false })
		}
	}()

	fmt.Println("up: looking for etcd, kube-apiserver, kube-controller-manager and kubectl")
	bins, err := controlplane.EnsureBinaries(ctx, os.Stdout)
	if err != nil {
		return err
	}
	d.update(func(s *State) { s.Phase = PhaseStarting })
	data := filepath.Join(o.Dir, clusterDir)
	if _, err := os.Stat(filepath.Join(data, "etcd")); err == nil {
		fmt.Println("up: starting etcd, kube-apiserver and kube-controller-manager on the data kept in", data)
	} else {
		fmt.Println("up: starting etcd, kube-apiserver and kube-controller-manager")
	}
	opts := controlplane.DefaultOptions()
	opts.Dir, opts.Binaries = data, bins
	cluster, err := controlplane.Start(ctx, opts)
	if err != nil {
		return err
	}
	d.cluster = cluster
	defer d.stop()

	kubeconfig := filepath.Join(o.Dir, kubeconfigOut)
	kc, err := os.ReadFile(cluster.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	d.addr = "127.0.0.1:" + strconv.Itoa(ports[0])
	d.probeAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
	d.update(func(s *State) {
		s.Kubeconfig, s.APIServer = kubeconfig, cluster.URL
		s.WebhookURL, s.ProbeURL = "https://"+d.addr, "http://"+d.probeAddr
		for _, name := range cluster.Components() {
			s.Components = append(s.Components, Component{Name: name, PID: cluster.Process(name).PID(), Up: true})
		}
		s.Components = append(s.Components, Component{Name: ServeComponent})
	})

	fmt.Println("up: starting Bouncer (bouncer serve)")
	if err := d.startServe(ctx); err != nil {
		return err
	}
	if o.SyncRepo != "" {
		fmt.Println("up: syncing policies from", o.SyncRepo)
		if err := applyFleetSync(ctx, cluster, o.SyncRepo, os.Getenv(syncTokenEnv)); err != nil {
			return err
		}
	} else {
		// Every start applies them again: server-side apply leaves them as
		// they are when nothing changed, and restores them when they were
		// edited.
		fmt.Println("up: applying the starter policies:", StarterPolicies)
		if err := applyStarter(ctx, cluster); err != nil {
			return err
		}
	}
	if err := d.waitRegistered(ctx); err != nil {
		return err
	}
	d.update(func(s *State) { s.Phase, s.Ready = PhaseReady, true })
	fmt.Println("up: ready")

	var wg sync.WaitGroup
	for _, name := range cluster.Components() {
		wg.Go(func() {
			d.supervise(ctx, name, func() *proc.Process { return cluster.Process(name) },
				func(ctx context.Context) error { return cluster.Restart(ctx, name) })
		})
	}
	wg.Go(func() { d.supervise(ctx, ServeComponent, d.serveProcess, d.startServe) })
	wg.Wait()
	fmt.Println("up: stopping")
	return nil
}

type daemon struct {
	dir, self       string
	log             *slog.Logger
	cluster         *controlplane.Cluster
	addr, probeAddr string
	mu              sync.Mutex
	state           *State
	serve           *proc.Process
	stopOnce        sync.Once
	// Restart backoff; zero means 1s doubling up to 30s.
	backoffMin, backoffMax time.Duration
}

// update changes the state under the lock and writes state.json.
func (d *daemon) update(f func(*State)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d.state)
	d.saveLocked()
}

func (d *daemon) save() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.saveLocked()
}

func (d *daemon) saveLocked() {
	if err := writeState(d.dir, d.state); err != nil {
		d.log.Error("writing state", "err", err)
	}
}

func (d *daemon) component(s *State, name string) *Component {
	for i := range s.Components {
		if s.Components[i].Name == name {
			return &s.Components[i]
		}
	}
	s.Components = append(s.Components, Component{Name: name})
	return &s.Components[len(s.Components)-1]
}

// serveArgs is the `bouncer serve` command line: flags only, so the daemon
// depends on nothing of Bouncer's but its command line.
func (d *daemon) serveArgs() []string {
	return []string{"serve",
		// Bouncer's own user, not the admin's: its drift check tells its
		// writes from a person's by username.
		"--kubeconfig", d.cluster.ServeKubeconfig,
		"--addr", d.addr,
		"--probe-addr", d.probeAddr,
		"--webhook-url", "https://" + d.addr,
		"--namespace", Namespace,
		"--pod-name", "bouncer-up",
		"--log-format", "text",
	}
}

// startServe starts `bouncer serve` and waits until its /readyz answers OK,
// which it does once the policies in the cluster are loaded.
func (d *daemon) startServe(ctx context.Context) error {
	p, err := proc.Start(ServeComponent, d.self, d.serveArgs(), filepath.Join(d.dir, serveLog), nil)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.serve = p
	d.mu.Unlock()
	d.update(func(s *State) { c := d.component(s, ServeComponent); c.PID, c.Up = p.PID(), false })
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	httpc := &http.Client{Timeout: 2 * time.Second}
	defer httpc.CloseIdleConnections()
	for {
		select {
		case <-p.Done():
			return p.ExitError()
		case <-ctx.Done():
			return fmt.Errorf("bouncer serve not ready: %w; see %s", ctx.Err(), p.LogPath)
		case <-time.After(200 * time.Millisecond):
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.probeAddr+"/readyz", nil)
		resp, err := httpc.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			d.update(func(s *State) { d.component(s, ServeComponent).Up = true })
			return nil
		}
	}
}

func (d *daemon) serveProcess() *proc.Process {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.serve
}

// waitRegistered waits for the webhook configuration that bouncer serve
// registers once ready, pointing at this run's address (one left by an
// earlier run on the same data may still name another port).
func (d *daemon) waitRegistered(ctx context.Context) error {
	kube, err := kubernetes.NewForConfig(d.cluster.RESTConfig())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	serve := d.serveProcess()
	for {
		vwc, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "bouncer", metav1.GetOptions{})
		if err == nil && len(vwc.Webhooks) > 0 {
			if u := vwc.Webhooks[0].ClientConfig.URL; u != nil && strings.HasPrefix(*u, "https://"+d.addr+"/") {
				return nil
			}
		}
		select {
		case <-serve.Done():
			return fmt.Errorf("bouncer serve stopped: %w", serve.ExitError())
		case <-ctx.Done():
			return fmt.Errorf("Bouncer's webhook not registered: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// supervise waits for the child's process to exit and starts it again,
// with exponential backoff between failed attempts, until ctx ends. A child
// that ran for a minute before exiting is restarted at once: it was
// healthy, not crash-looping.
func (d *daemon) supervise(ctx context.Context, name string, current func() *proc.Process, restart func(context.Context) error) {
	minDelay, maxDelay := d.backoffMin, d.backoffMax
	if minDelay == 0 {
		minDelay, maxDelay = time.Second, 30*time.Second
	}
	delay := minDelay
	for {
		p := current()
		select {
		case <-ctx.Done():
			return
		case <-p.Done():
		}
		now := time.Now()
		lastErr := fmt.Sprintf("pid %d exited (%v); see %s", p.PID(), p.Err(), p.LogPath)
		fmt.Printf("up: %s (pid %d) exited: %v; restarting it\n", name, p.PID(), p.Err())
		d.log.Warn("child exited", "component", name, "pid", p.PID(), "err", p.ExitError())
		d.update(func(s *State) {
			c := d.component(s, name)
			c.Up, c.LastError, c.LastExit = false, lastErr, &now
			s.Ready, s.Phase = false, PhaseDegraded
		})
		if time.Since(p.Started()) > time.Minute {
			delay = minDelay
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, maxDelay)
			err := restart(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				break
			}
			fmt.Printf("up: restarting %s failed: %v; next attempt in %s\n", name, firstLine(err.Error()), delay)
			d.update(func(s *State) { d.component(s, name).LastError = firstLine(err.Error()) })
		}
		np := current()
		fmt.Printf("up: %s restarted (pid %d)\n", name, np.PID())
		d.update(func(s *State) {
			c := d.component(s, name)
			c.PID, c.Up = np.PID(), true
			c.Restarts++
			all := true
			for _, o := range s.Components {
				all = all && o.Up
			}
			if all {
				s.Ready, s.Phase = true, PhaseReady
			}
		})
	}
}

// stop ends bouncer serve, then the control plane (in reverse order).
func (d *daemon) stop() {
	d.stopOnce.Do(func() {
		if p := d.serveProcess(); p != nil {
			if err := p.Stop(); err != nil {
				d.log.Error("stopping bouncer serve", "err", err)
			}
		}
		if err := d.cluster.Stop(); err != nil {
			d.log.Error("stopping the control plane", "err", err)
		}
		d.update(func(s *State) {
			s.Ready = false
			for i := range s.Components {
				s.Components[i].Up = false
			}
		})
	})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// starterDocs reads the starter policies from the library: templates,
// then constraints.
func starterDocs() (templates, constraints []*load.Document, err error) {
	for _, name := range StarterPolicies {
		for _, f := range []string{"template.yaml", "constraint.yaml"} {
			raw, err := fs.ReadFile(library.FS, name+"/"+f)
			if err != nil {
				return nil, nil, fmt.Errorf("starter policy %s: %w", name, err)
			}
			err = load.Read("library/"+name+"/"+f, bytes.NewReader(raw), func(d *load.Document) error {
				if policyset.Classify(d) == policyset.Template {
					templates = append(templates, d)
				} else {
					constraints = append(constraints, d)
				}
				return nil
			})
			if err != nil {
				return nil, nil, err
			}
		}
	}
	return templates, constraints, nil
}

// applyStarter server-side applies the starter policies' templates, then
// their constraints (whose kinds exist once bouncer serve has generated the
// constraint CRDs, which Apply waits for).
func applyStarter(ctx context.Context, cluster *controlplane.Cluster) error {
	a, err := apply.New(cluster.RESTConfig(), fieldManager)
	if err != nil {
		return err
	}
	templates, constraints, err := starterDocs()
	if err != nil {
		return err
	}
	for _, d := range append(templates, constraints...) {
		if err := a.Apply(ctx, d, false); err != nil {
			return fmt.Errorf("applying starter policy: %w", err)
		}
	}
	return waitEnforced(ctx, cluster, a, constraints, false)
}

// waitEnforced waits until Bouncer reports each constraint enforced, so
// that ready means enforcing. With skipMissing, a constraint that does not
// exist (a fleet's repository no longer holds it) is not waited for.
func waitEnforced(ctx context.Context, cluster *controlplane.Cluster, a *apply.Applier, constraints []*load.Document, skipMissing bool) error {
	dyn, err := dynamic.NewForConfig(cluster.RESTConfig())
	if err != nil {
		return err
	}
	for _, d := range constraints {
		m, err := a.Resource(ctx, d.APIVersion(), d.Kind(), 30*time.Second)
		if err != nil {
			if skipMissing {
				continue
			}
			return err
		}
		missing := false
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			u, err := dyn.Resource(m.Resource).Get(ctx, d.Name(), metav1.GetOptions{})
			if skipMissing && apierrors.IsNotFound(err) {
				missing = true
				return true, nil
			}
			if err != nil {
				return false, nil
			}
			pods, _, _ := unstructured.NestedSlice(u.Object, "status", "byPod")
			for _, p := range pods {
				if pm, ok := p.(map[string]any); ok && pm["enforced"] == true {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil && !missing {
			return fmt.Errorf("constraint %s/%s not enforced: %w", d.Kind(), d.Name(), err)
		}
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, errors.Join(errors.New("finding a free port"), err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
