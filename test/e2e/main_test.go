// Package e2e runs Bouncer against a real control plane: etcd,
// kube-apiserver and kube-controller-manager built from the Go module proxy
// (internal/controlplane), with `bouncer serve` running as a separate process
// registered as the cluster's validating webhook over real TLS.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/controlplane"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

var (
	cluster    *controlplane.Cluster
	bins       controlplane.Binaries
	bouncerBin string
	repoRoot   string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Exiting here made go test print a bare "ok", as if tests had run
		// and passed. Running none makes it say "[no tests to run]".
		fmt.Println("e2e: every test here needs a real control plane; -short runs none of them")
		if err := flag.Set("test.run", "^$"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	wd, _ := os.Getwd()
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	tmp, err := os.MkdirTemp("", "bouncer-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	bouncerBin = filepath.Join(tmp, "bouncer")
	build := exec.CommandContext(ctx, "go", "build", "-tags", "kustomize_disable_go_plugin_support", "-o", bouncerBin, "./cmd/bouncer")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building bouncer:", err)
		return 1
	}
	bins, err = controlplane.EnsureBinaries(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "control-plane binaries:", err)
		return 1
	}
	opts := controlplane.DefaultOptions()
	opts.Binaries = bins
	cluster, err = controlplane.Start(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting control plane:", err)
		return 1
	}
	defer cluster.Stop()
	return m.Run()
}

func kube(t *testing.T) kubernetes.Interface {
	t.Helper()
	c, err := cluster.Client()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bouncerProcess is one `bouncer serve` replica.
type bouncerProcess struct {
	cmd      *exec.Cmd
	probeURL string
	url      string // the webhook's base URL
	log      string
	done     chan struct{}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startBouncer runs `bouncer serve` against the cluster with the webhook
// registered by URL, and waits until it is ready and registered.
func startBouncer(t *testing.T, name string, extra ...string) *bouncerProcess {
	t.Helper()
	port, probe := freePort(t), freePort(t)
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve",
		"--kubeconfig", cluster.Kubeconfig,
		"--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--probe-addr", fmt.Sprintf("127.0.0.1:%d", probe),
		"--webhook-url", fmt.Sprintf("https://127.0.0.1:%d", port),
		"--webhook-config-name", name,
		"--pod-name", name,
		"--log-level", "debug",
		// Tests stop replicas often; a short drain keeps them quick (flags
		// later in extra override it).
		"--shutdown-drain", "500ms",
	}, extra...)
	cmd := exec.Command(bouncerBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &bouncerProcess{cmd: cmd, probeURL: fmt.Sprintf("http://127.0.0.1:%d", probe), url: fmt.Sprintf("https://127.0.0.1:%d", port), log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		// A webhook pointing at a stopped process must not outlive its test.
		_ = kube(t).AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = kube(t).AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), name+"-mutating", metav1.DeleteOptions{})
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(string(b), "\n")
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			t.Logf("bouncer %s log tail:\n%s", name, strings.Join(lines, "\n"))
		}
	})
	eventually(t, 60*time.Second, func() error {
		select {
		case <-p.done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("bouncer exited early:\n%s", b)
		default:
		}
		resp, err := http.Get(p.probeURL + "/readyz")
		if err != nil {
			return err
		}
		body := readAll(resp)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz: %d: %s", resp.StatusCode, body)
		}
		for _, a := range extra {
			if a == "--manage-webhook-config=false" {
				return nil
			}
		}
		_, err = kube(t).AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), name, getOpts)
		return err
	})
	return p
}

func (p *bouncerProcess) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *bouncerProcess) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(p.probeURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := new(strings.Builder)
	_, _ = fmt.Fprint(b, readAll(resp))
	return b.String()
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}

// kubectl runs kubectl against the cluster; stdin is optional YAML.
func kubectl(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.Kubectl, append([]string{"--kubeconfig", cluster.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func restConfig() *rest.Config { return cluster.RESTConfig() }
