package up

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bouncer-policy/bouncer/internal/controlplane"
	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// syncTokenEnv passes the receiver token from `bouncer up` to its daemon.
const syncTokenEnv = "BOUNCER_UP_SYNC_TOKEN"

// applyFleetSync points the cluster at the fleet's repository: the
// receiver's Secret and a PolicySync, then waits until the commit is
// applied and the starter constraints it holds are enforced.
func applyFleetSync(ctx context.Context, cluster *controlplane.Cluster, repo, token string) error {
	if token == "" {
		return errors.New("no receiver token for the fleet's PolicySync (" + syncTokenEnv + " is empty)")
	}
	a, err := apply.New(cluster.RESTConfig(), fieldManager)
	if err != nil {
		return err
	}
	secret := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": fleetSecret, "namespace": Namespace},
		"data":     map[string]any{apis.SecretKeyWebhookToken: base64.StdEncoding.EncodeToString([]byte(token))},
	}}
	ps := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apis.SyncGroup + "/" + apis.SyncVersion, "kind": apis.KindPolicySync,
		"metadata": map[string]any{"name": FleetSyncName, "namespace": Namespace},
		"spec": map[string]any{
			"git":     map[string]any{"repo": repo, "branch": "main", "period": FleetPeriod.String()},
			"webhook": map[string]any{"secretRef": map[string]any{"name": fleetSecret}},
		},
	}}
	if _, err := a.Resource(ctx, ps.GetAPIVersion(), ps.GetKind(), time.Minute); err != nil {
		return fmt.Errorf("PolicySync API: %w", err)
	}
	for _, obj := range []*unstructured.Unstructured{secret, ps} {
		if _, err := a.ApplyObject(ctx, obj); err != nil {
			return fmt.Errorf("applying %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	dyn, err := dynamic.NewForConfig(cluster.RESTConfig())
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: apis.SyncGroup, Version: apis.SyncVersion, Resource: apis.PolicySyncResource}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		u, err := dyn.Resource(gvr).Namespace(Namespace).Get(ctx, FleetSyncName, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Ready" {
				last = fmt.Sprint(m["reason"], ": ", m["message"])
				return m["status"] == "True", nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("PolicySync %s/%s not ready (%s): %w", Namespace, FleetSyncName, last, err)
	}
	_, constraints, err := starterDocs()
	if err != nil {
		return err
	}
	return waitEnforced(ctx, cluster, a, constraints, true)
}

// Notify asks every running cluster of the fleet in dir to sync now, by
// calling its receiver as a git host would; the fleet's post-commit hook
// runs it. A cluster that does not run is skipped: it syncs when started.
func Notify(ctx context.Context, dir string, out io.Writer) error {
	f, err := ReadFleet(dir)
	if err != nil {
		return err
	}
	if f == nil {
		return fmt.Errorf("no fleet in %s (bouncer up --clusters N makes one)", dir)
	}
	token, err := os.ReadFile(filepath.Join(dir, tokenFile))
	if err != nil {
		return fmt.Errorf("the receiver token: %w", err)
	}
	var errs []error
	for i, c := range f.Clusters {
		name := ContextName(i + 1)
		s, err := ReadState(c)
		if err != nil || s == nil || !s.Ready {
			fmt.Fprintf(out, "%s: not running; it syncs when started\n", name)
			continue
		}
		if err := notifyOne(ctx, s, strings.TrimSpace(string(token))); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			fmt.Fprintf(out, "%s: %v\n", name, err)
			continue
		}
		fmt.Fprintf(out, "%s: sync requested\n", name)
	}
	return errors.Join(errs...)
}

// notifyOne calls one cluster's receiver, trusting the CA Bouncer
// registered in its webhook configuration.
func notifyOne(ctx context.Context, s *State, token string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	vwc, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "bouncer", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading Bouncer's CA: %w", err)
	}
	pool := x509.NewCertPool()
	for _, w := range vwc.Webhooks {
		pool.AppendCertsFromPEM(w.ClientConfig.CABundle)
	}
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer httpc.CloseIdleConnections()
	url := s.WebhookURL + "/sync/" + Namespace + "/" + FleetSyncName
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(nil))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("receiver answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
