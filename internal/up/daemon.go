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
	"time"

	"github.com/bouncer-policy/bouncer/library"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/internal/controlplane"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"github.com/bouncer-policy/bouncer/pkg/server"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// StarterPolicies are the library policies `bouncer up` installs: no latest
// or untagged images, no privileged containers, NET_RAW dropped.
var StarterPolicies = []string{"disallowed-tags", "pss-baseline-privileged", "drop-net-raw"}

// Foreground runs the daemon: control plane, Bouncer, starter policies. It
// records progress in the state file and runs until ctx ends.
func Foreground(ctx context.Context, dir string, log *slog.Logger) (err error) {
	state := &State{PID: os.Getpid(), Started: time.Now()}
	if err := writeState(dir, state); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			state.Error = err.Error()
			_ = writeState(dir, state)
		}
	}()
	fmt.Println("up: looking for etcd, kube-apiserver, kube-controller-manager and kubectl")
	bins, err := controlplane.EnsureBinaries(ctx, os.Stdout)
	if err != nil {
		return err
	}
	clusterDir := filepath.Join(dir, "cluster")
	if err := os.RemoveAll(clusterDir); err != nil {
		return err
	}
	fmt.Println("up: starting etcd, kube-apiserver and kube-controller-manager")
	opts := controlplane.DefaultOptions()
	opts.Dir, opts.Binaries = clusterDir, bins
	cluster, err := controlplane.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer cluster.Stop()

	port, err := freePort()
	if err != nil {
		return err
	}
	probe, err := freePort()
	if err != nil {
		return err
	}
	state.Kubeconfig = filepath.Join(dir, "kubeconfig")
	kc, err := os.ReadFile(cluster.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.WriteFile(state.Kubeconfig, kc, 0o600); err != nil {
		return err
	}
	state.APIServer = cluster.URL
	state.WebhookURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	state.ProbeURL = fmt.Sprintf("http://127.0.0.1:%d", probe)
	_ = writeState(dir, state)

	fmt.Println("up: starting Bouncer's webhook")
	srvCtx, stopServer := context.WithCancel(ctx)
	defer stopServer()
	srvErr := make(chan error, 1)
	go func() {
		srvErr <- server.Run(srvCtx, server.Options{
			Config: cluster.RESTConfig(), Addr: fmt.Sprintf("127.0.0.1:%d", port), ProbeAddr: fmt.Sprintf("127.0.0.1:%d", probe),
			WebhookURL: state.WebhookURL, ManageWebhookConfig: true, InstallCRDs: true, PodName: "bouncer-up", Log: log,
		})
	}()

	fmt.Println("up: installing the starter policies:", StarterPolicies)
	if err := installStarter(ctx, cluster); err != nil {
		return err
	}
	if err := waitRegistered(ctx, cluster, state.ProbeURL, srvErr); err != nil {
		return err
	}
	state.Ready = true
	if err := writeState(dir, state); err != nil {
		return err
	}
	fmt.Println("up: ready")
	select {
	case <-ctx.Done():
	case err = <-srvErr:
		if err != nil {
			return fmt.Errorf("bouncer serve stopped: %w", err)
		}
	}
	fmt.Println("up: stopping")
	stopServer()
	return nil
}

func installStarter(ctx context.Context, cluster *controlplane.Cluster) error {
	a, err := apply.New(cluster.RESTConfig(), "bouncer-up")
	if err != nil {
		return err
	}
	var templates, constraints []*load.Document
	for _, name := range StarterPolicies {
		for _, f := range []string{"template.yaml", "constraint.yaml"} {
			raw, err := fs.ReadFile(library.FS, name+"/"+f)
			if err != nil {
				return fmt.Errorf("starter policy %s: %w", name, err)
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
				return err
			}
		}
	}
	// Templates first: their constraint kinds exist only once Bouncer has
	// generated the CRDs, which Apply waits for.
	for _, d := range append(templates, constraints...) {
		if err := a.Apply(ctx, d, false); err != nil {
			return err
		}
	}
	dyn, err := dynamic.NewForConfig(cluster.RESTConfig())
	if err != nil {
		return err
	}
	for _, d := range constraints {
		m, err := a.Resource(ctx, d.APIVersion(), d.Kind(), 30*time.Second)
		if err != nil {
			return err
		}
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			u, err := dyn.Resource(m.Resource).Get(ctx, d.Name(), metav1.GetOptions{})
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
		if err != nil {
			return fmt.Errorf("constraint %s/%s not enforced: %w", d.Kind(), d.Name(), err)
		}
	}
	return nil
}

func waitRegistered(ctx context.Context, cluster *controlplane.Cluster, probeURL string, srvErr chan error) error {
	kube, err := kubernetes.NewForConfig(cluster.RESTConfig())
	if err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-srvErr:
			return fmt.Errorf("bouncer serve stopped: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		resp, err := http.Get(probeURL + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		if _, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "bouncer", metav1.GetOptions{}); err == nil {
			return nil
		}
	}
	return errors.New("Bouncer's webhook was not registered within 2 minutes")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
