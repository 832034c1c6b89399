package apply

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/controlplane"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// One control plane for every test of the package that needs one, started
// on first use and stopped after the last test.
var (
	clusterOnce sync.Once
	testCluster *controlplane.Cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if testCluster != nil {
		_ = testCluster.Stop()
	}
	os.Exit(code)
}

// env is what an integration test gets: an applier, clients and a fresh
// namespace of its own.
type env struct {
	a   *Applier
	kc  kubernetes.Interface
	dyn dynamic.Interface
	ns  string
}

// newEnv starts (once) a real etcd + kube-apiserver. Without -short a
// failure to obtain or start it fails the test: a skipped integration test
// would hide a broken build.
func newEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real kube-apiserver (internal/controlplane); skipped with -short")
	}
	clusterOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		bins, err := controlplane.EnsureBinaries(ctx, os.Stderr)
		if err != nil {
			clusterErr = fmt.Errorf("control-plane binaries: %w", err)
			return
		}
		// No controller-manager: nothing here needs Pods, and namespace
		// deletion finishing is not under test.
		testCluster, clusterErr = controlplane.Start(ctx, controlplane.Options{Binaries: bins})
	})
	if clusterErr != nil {
		t.Fatalf("starting the control plane: %v", clusterErr)
	}
	a, err := New(testCluster.RESTConfig(), FieldManager)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := testCluster.Client()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(testCluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	if _, err := kc.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &env{a: a, kc: kc, dyn: dyn, ns: ns}
}

// objs reads YAML documents, with NS replaced by the test's namespace.
func (e *env) objs(t *testing.T, docs string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, doc := range strings.Split(strings.ReplaceAll(docs, "NS", e.ns), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		m := map[string]any{}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("test YAML: %v\n%s", err, doc)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

func (e *env) apply(t *testing.T, set Set, docs string, opts Options) *Result {
	t.Helper()
	res, err := e.a.ApplySet(context.Background(), set, e.objs(t, docs), opts)
	if err != nil {
		t.Fatalf("ApplySet: %v", err)
	}
	return res
}

func (e *env) get(t *testing.T, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	var ri dynamic.ResourceInterface = e.dyn.Resource(gvr)
	if ns != "" {
		ri = e.dyn.Resource(gvr).Namespace(ns)
	}
	u, err := ri.Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return u
}

var (
	configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	secrets    = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
)

func refs(rs []ObjectRef) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, "; ")
}

func noErrors(t *testing.T, res *Result) {
	t.Helper()
	if err := res.Err(); err != nil {
		t.Fatalf("object errors: %v", err)
	}
}
