// Package controlplane runs real, local Kubernetes control planes (etcd,
// kube-apiserver and optionally kube-controller-manager) as child processes,
// for Bouncer's integration tests, `bouncer up` and fleet tests.
//
// There is no container runtime and no kubelet: Pods stay Pending, which is
// enough to exercise admission. The binaries are built from the Go module
// proxy on first use and cached (see EnsureBinaries), or taken from
// $KUBEBUILDER_ASSETS. Each Cluster has its own ports, certificates and
// state directory, so several can run at once.
package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/internal/proc"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// ServiceCIDR is the cluster's service IP range; its first address is
	// the in-cluster apiserver's (the "kubernetes" Service).
	ServiceCIDR = "10.0.0.0/24"
	// ServiceAccountIssuer is the issuer of the cluster's service-account
	// tokens.
	ServiceAccountIssuer = "https://kubernetes.default.svc"

	firstServiceIP = "10.0.0.1"
	adminUser      = "bouncer-admin"
	contextName    = "bouncer"

	defaultStartTimeout = 3 * time.Minute
	pollInterval        = 200 * time.Millisecond
)

// Options configures Start. The zero value is usable but runs no
// controller-manager; DefaultOptions is what most callers want.
type Options struct {
	// Dir holds certificates, the kubeconfig, etcd's data and the
	// components' log files (etcd.log, kube-apiserver.log,
	// kube-controller-manager.log). Empty means a new temporary directory,
	// removed by Stop. A given Dir is created if needed and never removed,
	// and a later Start on it keeps its data: etcd's, and the certificates
	// and admin token, so kubeconfigs handed out stay valid.
	Dir string
	// Binaries to run. The zero value means EnsureBinaries, which may build
	// them (its output goes to Progress).
	Binaries Binaries
	// ControllerManager starts kube-controller-manager, which creates each
	// namespace's default ServiceAccount (Pods are rejected without it) and
	// turns Deployments into ReplicaSets and Pods.
	ControllerManager bool
	// Logs, if non-nil, also receives every component's output, each line
	// prefixed with "[component] ". The log files in Dir are always written.
	Logs io.Writer
	// Progress receives the output of a binary build, if one is needed.
	// nil means os.Stderr, because a silent build of several minutes looks
	// like a hang.
	Progress io.Writer
	// APIServerFlags are appended to kube-apiserver's command line, after
	// the defaults; for single-valued flags the last occurrence wins.
	APIServerFlags []string
	// StartTimeout bounds how long Start waits for the components to become
	// ready (not counting a binary build). Zero means 3 minutes.
	StartTimeout time.Duration
}

// DefaultOptions returns Options with the controller-manager enabled.
func DefaultOptions() Options {
	return Options{ControllerManager: true}
}

// Cluster is a running control plane. Stop it when done.
type Cluster struct {
	// Dir is the state directory (see Options.Dir).
	Dir string
	// Kubeconfig is the path of an admin (system:masters) kubeconfig that
	// trusts the cluster's CA.
	Kubeconfig string
	// ServeKubeconfig is as privileged but names another user, "bouncer",
	// for `bouncer serve`: Bouncer tells its own writes from a person's by
	// username (git sync's drift check), so it must not share the admin's.
	ServeKubeconfig string
	// URL is the apiserver's address, https://127.0.0.1:<port>.
	URL string
	// CAPEM is the CA certificate that signed the apiserver's serving
	// certificate, PEM encoded.
	CAPEM []byte
	// EtcdURL is etcd's client address.
	EtcdURL string

	bins           Binaries
	opts           Options
	token          string
	serveToken     string
	removeDir      bool
	triedKeptPorts bool  // a retry after a port clash picks new ones
	ports          []int // handed out to this cluster; released by Stop

	mu         sync.Mutex
	components []*component // in start order
	pidsSeen   []int        // every child ever started, for tests

	stopOnce sync.Once
	stopErr  error
}

// secrets are generated once per Start and written into Dir.
type secrets struct {
	ca, serving    *keyPair
	saKey, saPub   []byte
	token          string
	serveToken     string
	caPath         string
	servingCert    string
	servingKey     string
	saKeyPath      string
	saPubPath      string
	tokenFile      string
	apiserverCerts string
}

// Start runs etcd, kube-apiserver and, if opts.ControllerManager, the
// controller-manager, and returns once the apiserver is ready (and, with a
// controller-manager, the default namespace's ServiceAccount exists).
//
// ctx bounds only the start: the cluster runs until Stop. If Start fails it
// stops whatever it had started and removes a temporary Dir.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bins := opts.Binaries
	if bins == (Binaries{}) {
		progress := opts.Progress
		if progress == nil {
			progress = os.Stderr
		}
		var err error
		if bins, err = EnsureBinaries(ctx, progress); err != nil {
			return nil, fmt.Errorf("starting control plane: %w", err)
		}
	}
	if bins.Etcd == "" || bins.APIServer == "" || bins.Kubectl == "" || (opts.ControllerManager && bins.ControllerManager == "") {
		return nil, fmt.Errorf("starting control plane: incomplete Binaries %+v", bins)
	}
	c := &Cluster{Dir: opts.Dir, bins: bins, opts: opts}
	timeout := c.startTimeout()
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("control plane not ready within %s", timeout))
	defer cancel()
	if c.Dir == "" {
		dir, err := os.MkdirTemp("", "bouncer-controlplane-")
		if err != nil {
			return nil, fmt.Errorf("starting control plane: %w", err)
		}
		c.Dir, c.removeDir = dir, true
	} else {
		abs, err := filepath.Abs(c.Dir)
		if err != nil {
			return nil, fmt.Errorf("starting control plane: %w", err)
		}
		c.Dir = abs
		if err := os.MkdirAll(c.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("starting control plane: %w", err)
		}
	}
	etcdData := filepath.Join(c.Dir, "etcd")
	_, statErr := os.Stat(etcdData)
	etcdDataIsOurs := errors.Is(statErr, os.ErrNotExist)

	s, err := c.loadOrWriteSecrets()
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("starting control plane: %w", err)
	}
	// A port can be taken by someone else between choosing and binding it;
	// rare, but with many clusters per test run worth a retry.
	for attempt := 1; ; attempt++ {
		err = c.start(ctx, s)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, proc.ErrAddrInUse) || attempt == 3 || ctx.Err() != nil {
			break
		}
		if stopErr := c.stopProcesses(); stopErr != nil {
			break
		}
		if etcdDataIsOurs {
			// etcd remembers its peer URL; a new port needs a new member.
			_ = os.RemoveAll(etcdData)
		}
	}
	if stopErr := c.Stop(); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	return nil, fmt.Errorf("starting control plane: %w", err)
}

// loadOrWriteSecrets reuses the certificates, service-account key and admin
// token a previous Start left in a kept Dir, so that the data in etcd (tokens
// signed with the key, the published root CA) and kubeconfigs handed out
// stay valid; it generates new ones when there are none, or when the serving
// certificate is about to expire.
func (c *Cluster) loadOrWriteSecrets() (*secrets, error) {
	s := secretPaths(c.Dir)
	if !c.removeDir {
		if ok := c.loadSecrets(s); ok {
			return s, nil
		}
	}
	return c.writeSecrets()
}

func secretPaths(dir string) *secrets {
	pki := filepath.Join(dir, "pki")
	return &secrets{
		caPath:         filepath.Join(pki, "ca.crt"),
		servingCert:    filepath.Join(pki, "apiserver.crt"),
		servingKey:     filepath.Join(pki, "apiserver.key"),
		saKeyPath:      filepath.Join(pki, "sa.key"),
		saPubPath:      filepath.Join(pki, "sa.pub"),
		tokenFile:      filepath.Join(pki, "tokens.csv"),
		apiserverCerts: filepath.Join(dir, "apiserver-certs"),
	}
}

// loadSecrets reads what writeSecrets wrote; false when anything is missing
// or the serving certificate expires within a day.
func (c *Cluster) loadSecrets(s *secrets) bool {
	for _, p := range []string{s.servingKey, s.saKeyPath, s.saPubPath} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	caPEM, err := os.ReadFile(s.caPath)
	if err != nil {
		return false
	}
	servingPEM, err := os.ReadFile(s.servingCert)
	if err != nil {
		return false
	}
	block, _ := pem.Decode(servingPEM)
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || time.Until(cert.NotAfter) < 24*time.Hour {
		return false
	}
	tokens, err := os.ReadFile(s.tokenFile)
	if err != nil {
		return false
	}
	users := map[string]string{}
	for _, line := range strings.Split(string(tokens), "\n") {
		f := strings.SplitN(line, ",", 3)
		if len(f) == 3 && f[0] != "" {
			users[f[1]] = f[0]
		}
	}
	if users[adminUser] == "" {
		return false
	}
	s.token, s.serveToken = users[adminUser], users[serveUser]
	if s.serveToken == "" {
		// A Dir kept from before Bouncer had a user of its own.
		if s.serveToken, err = newToken(); err != nil {
			return false
		}
		if os.WriteFile(s.tokenFile, []byte(tokenLines(s)), 0o600) != nil {
			return false
		}
	}
	c.token, c.serveToken, c.CAPEM = s.token, s.serveToken, caPEM
	return true
}

// serveUser is `bouncer serve`'s user on a local control plane.
const serveUser = "bouncer"

func newToken() (string, error) {
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return "", fmt.Errorf("generating a token: %w", err)
	}
	return hex.EncodeToString(tok), nil
}

// tokenLines is the apiserver's token file: token,user,uid,"groups".
func tokenLines(s *secrets) string {
	return fmt.Sprintf("%s,%s,%s,\"system:masters\"\n%s,%s,%s,\"system:masters\"\n",
		s.token, adminUser, adminUser, s.serveToken, serveUser, serveUser)
}

// writeSecrets generates the CA, serving certificate, service-account key
// and admin token and writes them into Dir.
func (c *Cluster) writeSecrets() (*secrets, error) {
	s := secretPaths(c.Dir)
	var err error
	if s.ca, err = newCA("bouncer-controlplane-ca"); err != nil {
		return nil, err
	}
	s.serving, err = newServingCert(s.ca, "kube-apiserver",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(firstServiceIP)})
	if err != nil {
		return nil, err
	}
	if s.saKey, s.saPub, err = newServiceAccountKey(); err != nil {
		return nil, err
	}
	if s.token, err = newToken(); err != nil {
		return nil, err
	}
	if s.serveToken, err = newToken(); err != nil {
		return nil, err
	}
	c.token, c.serveToken = s.token, s.serveToken
	c.CAPEM = s.ca.CertPEM

	for _, d := range []string{filepath.Dir(s.caPath), s.apiserverCerts} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("writing certificates: %w", err)
		}
	}
	tokens := tokenLines(s)
	// The serving certificate goes last: loadSecrets takes its presence as
	// the sign that the others were written.
	for _, f := range []struct {
		path string
		data []byte
	}{
		{s.caPath, s.ca.CertPEM},
		{s.servingKey, s.serving.KeyPEM},
		{s.saKeyPath, s.saKey},
		{s.saPubPath, s.saPub},
		{s.tokenFile, []byte(tokens)},
		{s.servingCert, s.serving.CertPEM},
	} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", filepath.Base(f.path), err)
		}
	}
	return s, nil
}

// Component names, as Process takes them and as the log files are named.
const (
	Etcd              = "etcd"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
)

// component is one control-plane process with what it takes to start it
// again: Restart reuses the command line, so ports and data stay.
type component struct {
	name  string
	bin   string
	args  []string
	ready func(context.Context) error
	proc  *proc.Process
}

// start picks ports and starts the components, waiting for each.
func (c *Cluster) start(ctx context.Context, s *secrets) error {
	ports, err := c.choosePorts()
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	c.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	c.URL = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.URL, c.CAPEM, c.token); err != nil {
		return err
	}
	c.ServeKubeconfig = filepath.Join(c.Dir, "bouncer.kubeconfig")
	if err := writeKubeconfig(c.ServeKubeconfig, c.URL, c.CAPEM, c.serveToken); err != nil {
		return err
	}
	httpc := &http.Client{Timeout: 2 * time.Second}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAPEM)
	httpsc := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	client, err := c.Client()
	if err != nil {
		return err
	}

	comps := []*component{{
		name: Etcd,
		bin:  c.bins.Etcd,
		args: []string{
			"--name=default",
			"--data-dir=" + filepath.Join(c.Dir, "etcd"),
			"--listen-client-urls=" + c.EtcdURL,
			"--advertise-client-urls=" + c.EtcdURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=default=" + peerURL,
			// Throw-away clusters do not need durability, and fsync dominates
			// etcd's latency on slow disks.
			"--unsafe-no-fsync",
		},
		ready: func(ctx context.Context) error { return httpGetOK(ctx, httpc, c.EtcdURL+"/health", "") },
	}, {
		name: APIServer,
		bin:  c.bins.APIServer,
		args: append([]string{
			"--etcd-servers=" + c.EtcdURL,
			"--secure-port=" + strconv.Itoa(apiPort),
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			// The endpoint reconcilers refuse a loopback advertise address (since
			// about v1.37), and nothing in-cluster needs the "kubernetes"
			// Service's endpoints: no Pod ever runs.
			"--endpoint-reconciler-type=none",
			"--cert-dir=" + s.apiserverCerts, // keep it out of /var/run/kubernetes
			"--tls-cert-file=" + s.servingCert,
			"--tls-private-key-file=" + s.servingKey,
			"--client-ca-file=" + s.caPath,
			"--token-auth-file=" + s.tokenFile,
			"--service-account-issuer=" + ServiceAccountIssuer,
			"--service-account-key-file=" + s.saPubPath,
			"--service-account-signing-key-file=" + s.saKeyPath,
			"--authorization-mode=RBAC",
			"--service-cluster-ip-range=" + ServiceCIDR,
			// Resolve webhook Service references to endpoints rather than
			// cluster IPs, which nothing routes here.
			"--enable-aggregator-routing=true",
		}, c.opts.APIServerFlags...),
		ready: func(ctx context.Context) error { return httpGetOK(ctx, httpsc, c.URL+"/readyz", c.token) },
	}}
	if c.opts.ControllerManager {
		comps = append(comps, &component{
			name: ControllerManager,
			bin:  c.bins.ControllerManager,
			args: []string{
				"--kubeconfig=" + c.Kubeconfig,
				"--service-account-private-key-file=" + s.saKeyPath,
				"--root-ca-file=" + s.caPath,
				"--use-service-account-credentials=false",
				// No pod network, no nodes: IPAM and node lifecycle only make noise.
				"--controllers=*,-nodeipam,-nodelifecycle",
				"--leader-elect=false",
				"--secure-port=0",
			},
			// Pods are refused without their namespace's default
			// ServiceAccount, which the controller-manager creates.
			ready: func(ctx context.Context) error {
				_, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return errors.New("the default ServiceAccount is not created yet")
				}
				return err
			},
		})
	}
	for _, comp := range comps {
		c.mu.Lock()
		c.components = append(c.components, comp)
		c.mu.Unlock()
		if err := c.run(ctx, comp, true); err != nil {
			return fmt.Errorf("starting %s: %w", comp.name, err)
		}
	}
	return nil
}

// run starts comp with its log in Dir/<name>.log and waits until it is
// ready. With all, any component that exits meanwhile fails the wait (an
// apiserver is not going to get ready without its etcd).
func (c *Cluster) run(ctx context.Context, comp *component, all bool) error {
	p, err := proc.Start(comp.name, comp.bin, comp.args, filepath.Join(c.Dir, comp.name+".log"), c.opts.Logs)
	if err != nil {
		return err
	}
	c.mu.Lock()
	comp.proc = p
	c.pidsSeen = append(c.pidsSeen, p.PID())
	c.mu.Unlock()
	return c.waitFor(ctx, comp, all)
}

// waitFor polls comp's readiness check until it succeeds, failing early if
// comp (or, with all, any component) has exited (the log tail says why) or
// ctx ends.
func (c *Cluster) waitFor(ctx context.Context, comp *component, all bool) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var lastErr error
	for {
		watch := []*proc.Process{comp.proc}
		if all {
			watch = c.running()
		}
		for _, q := range watch {
			if q.Exited() {
				return fmt.Errorf("%s exited early: %w", q.Name, q.ExitError())
			}
		}
		if lastErr = comp.ready(ctx); lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be ready: %w (last error: %v); last log lines from %s:\n%s",
				comp.name, context.Cause(ctx), lastErr, comp.proc.LogPath, proc.LogTail(comp.proc.LogPath, 10))
		case <-t.C:
		}
	}
}

// running returns the components' current processes in start order.
func (c *Cluster) running() []*proc.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ps []*proc.Process
	for _, comp := range c.components {
		if comp.proc != nil {
			ps = append(ps, comp.proc)
		}
	}
	return ps
}

// Components returns the names of the cluster's components in start order.
func (c *Cluster) Components() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, len(c.components))
	for i, comp := range c.components {
		names[i] = comp.name
	}
	return names
}

// Process returns the named component's current process (see the
// component name constants), or nil if there is no such component. A
// supervisor waits on its Done and calls Restart.
func (c *Cluster) Process(name string) *proc.Process {
	if comp := c.component(name); comp != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		return comp.proc
	}
	return nil
}

func (c *Cluster) component(name string) *component {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, comp := range c.components {
		if comp.name == name {
			return comp
		}
	}
	return nil
}

// Restart stops the named component if it still runs and starts it again
// with the same command line (ports, data and certificates stay), returning
// once it is ready again. The other components keep running: the apiserver
// reconnects to a restarted etcd, the controller-manager to a restarted
// apiserver. ctx bounds the wait, together with Options.StartTimeout.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	comp := c.component(name)
	if comp == nil {
		return fmt.Errorf("restarting %s: no such component", name)
	}
	if old := c.Process(name); old != nil {
		if err := old.Stop(); err != nil {
			return fmt.Errorf("restarting %s: %w", name, err)
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.startTimeout(), fmt.Errorf("%s not ready within %s", name, c.startTimeout()))
	defer cancel()
	if err := c.run(ctx, comp, false); err != nil {
		return fmt.Errorf("restarting %s: %w", name, err)
	}
	return nil
}

func (c *Cluster) startTimeout() time.Duration {
	if c.opts.StartTimeout > 0 {
		return c.opts.StartTimeout
	}
	return defaultStartTimeout
}

func httpGetOK(ctx context.Context, c *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// RESTConfig returns a new admin client configuration for the cluster.
func (c *Cluster) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            c.URL,
		BearerToken:     c.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAPEM},
		// Tests create objects in bursts; the client default of 5 QPS
		// makes them slow for no benefit against a private apiserver.
		QPS:   100,
		Burst: 200,
	}
}

// Client returns an admin clientset for the cluster.
func (c *Cluster) Client() (kubernetes.Interface, error) {
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return nil, fmt.Errorf("creating client for %s: %w", c.URL, err)
	}
	return cs, nil
}

// Kubectl runs kubectl against the cluster as the admin and returns its
// standard output. On failure the error includes kubectl's standard error
// (where, for example, an admission denial is printed).
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{
		"--kubeconfig=" + c.Kubeconfig,
		// Keep discovery caches per cluster and out of the user's ~/.kube.
		"--cache-dir=" + filepath.Join(c.Dir, "kubectl-cache"),
	}, args...)
	cmd := exec.CommandContext(ctx, c.bins.Kubectl, full...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return []byte(stdout.String()), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return []byte(stdout.String()), nil
}

// Stop stops the controller-manager, the apiserver and etcd, in that order
// (an apiserver whose etcd is gone keeps retrying for minutes): SIGTERM to
// each process group, SIGKILL after a grace period. It removes Dir if Start
// created it. Stop is idempotent and safe on a nil Cluster.
func (c *Cluster) Stop() error {
	if c == nil {
		return nil
	}
	c.stopOnce.Do(func() {
		err := c.stopProcesses()
		// Free again: a later Start on the same kept Dir may take them back.
		releasePorts(c.ports)
		if c.removeDir {
			if rmErr := os.RemoveAll(c.Dir); rmErr != nil {
				err = errors.Join(err, fmt.Errorf("removing %s: %w", c.Dir, rmErr))
			}
		}
		if err != nil {
			c.stopErr = fmt.Errorf("stopping control plane: %w", err)
		}
	})
	return c.stopErr
}

func (c *Cluster) stopProcesses() error {
	c.mu.Lock()
	comps := c.components
	c.components = nil
	c.mu.Unlock()
	var errs []error
	for i := len(comps) - 1; i >= 0; i-- {
		if p := comps[i].proc; p != nil {
			errs = append(errs, p.Stop())
		}
	}
	return errors.Join(errs...)
}

// pids returns the PIDs of every process the cluster has started.
func (c *Cluster) pids() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.pidsSeen...)
}

// writeKubeconfig writes an admin kubeconfig with the CA embedded, so the
// file works on its own (copied elsewhere, or after Dir's pki is gone).
func writeKubeconfig(path, server string, caPEM []byte, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[contextName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: adminUser}
	cfg.CurrentContext = contextName
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return nil
}

// choosePorts returns etcd's client and peer ports and the apiserver's. A
// kept Dir keeps them when they are still free: the kubeconfig's address
// stays, and so does the peer address etcd recorded in its data.
func (c *Cluster) choosePorts() ([]int, error) {
	path := filepath.Join(c.Dir, "ports")
	if !c.removeDir && !c.triedKeptPorts {
		c.triedKeptPorts = true
		if b, err := os.ReadFile(path); err == nil {
			var ports []int
			for _, f := range strings.Fields(string(b)) {
				if p, err := strconv.Atoi(f); err == nil && p > 0 && p < 65536 {
					ports = append(ports, p)
				}
			}
			if len(ports) == 3 && reservePorts(ports) {
				c.ports = ports
				return ports, nil
			}
		}
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	c.ports = ports
	if !c.removeDir {
		_ = os.WriteFile(path, []byte(fmt.Sprintf("%d %d %d\n", ports[0], ports[1], ports[2])), 0o600)
	}
	return ports, nil
}

// reservePorts reports whether every port can be bound now and none was
// handed out by this process, and marks them handed out.
func reservePorts(ports []int) bool {
	portsMu.Lock()
	defer portsMu.Unlock()
	for _, p := range ports {
		if portsGiven[p] {
			return false
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		l.Close()
	}
	for _, p := range ports {
		portsGiven[p] = true
	}
	return true
}

func releasePorts(ports []int) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for _, p := range ports {
		delete(portsGiven, p)
	}
}

var (
	portsMu sync.Mutex
	// portsGiven keeps this process from handing one port to two clusters
	// started at the same time: the kernel may return a port again as soon
	// as the probing listener is closed.
	portsGiven = map[int]bool{}
)

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago and have not been returned before by this process.
func freePorts(n int) ([]int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			return nil, errors.New("finding free ports: giving up after many tries")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding free ports: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsGiven[port] {
			portsGiven[port] = true
			ports = append(ports, port)
		}
	}
	return ports, nil
}
