package e2e

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/internal/podgen"
	"github.com/bouncer-policy/bouncer/pkg/watchjson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
)

// The audit's one-pass watch decoder gives, from the real apiserver, the
// events client-go's dynamic client gives: Pods and ConfigMaps added,
// modified and deleted, and the error of a resource that is not served.
func TestWatchJSONMatchesClientGo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "watchjson"
	createNamespace(t, ns)
	t.Cleanup(func() { _ = kube(t).CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	plain, err := dynamic.NewForConfig(restConfig())
	if err != nil {
		t.Fatal(err)
	}
	fast, err := watchjson.Wrap(plain, restConfig())
	if err != nil {
		t.Fatal(err)
	}
	pods := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	cms := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	for _, gvr := range []schema.GroupVersionResource{pods, cms} {
		list, err := plain.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rv := list.GetResourceVersion()
		opts := metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}
		// One watch namespaced, one across the cluster (filtered to ns).
		want, err := plain.Resource(gvr).Namespace(ns).Watch(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fast.Resource(gvr).Namespace(ns).Watch(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		all, err := fast.Resource(gvr).Watch(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		const n = 20
		for i := range n {
			var obj map[string]any
			if gvr == pods {
				obj = podgen.CompliantPod(fmt.Sprintf("w-%d", i), ns)
			} else {
				obj = map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": fmt.Sprintf("w-%d", i)},
					"data": map[string]any{"i": fmt.Sprint(i), "text": "ünïcode \u2028 \"quoted\"\n"}}
			}
			c := plain.Resource(gvr).Namespace(ns)
			u, err := c.Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			u.SetLabels(map[string]string{"touched": "yes"})
			if _, err := c.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := c.Delete(ctx, u.GetName(), metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
				t.Fatal(err)
			}
		}
		w, g := collect(t, want, 3*n, ""), collect(t, got, 3*n, "")
		a := collect(t, all, 3*n, ns)
		want.Stop()
		got.Stop()
		all.Stop()
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: watchjson's %d events differ from client-go's %d", gvr.Resource, len(g), len(w))
		}
		if !reflect.DeepEqual(a, w) {
			t.Errorf("%s: the cluster-wide watch's events differ from the namespaced one's", gvr.Resource)
		}
	}
	// A resource the apiserver does not serve: the same error, before any
	// event.
	missing := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	var errs []string
	for _, c := range []dynamic.Interface{plain, fast} {
		wi, err := c.Resource(missing).Namespace(ns).Watch(ctx, metav1.ListOptions{})
		if err == nil {
			wi.Stop()
			t.Fatal("a watch on a resource that is not served started")
		}
		errs = append(errs, err.Error())
	}
	if errs[0] != errs[1] {
		t.Errorf("watching a missing resource: client-go %q, watchjson %q", errs[0], errs[1])
	}
}

// collect reads n events of namespace ns ("" for any), skipping bookmarks
// (their timing differs between two watches).
func collect(t *testing.T, w watch.Interface, n int, ns string) []watch.Event {
	t.Helper()
	var out []watch.Event
	timeout := time.After(60 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(out), n)
			}
			if ev.Type == watch.Bookmark {
				continue
			}
			if u, ok := ev.Object.(*unstructured.Unstructured); ns != "" && ok && u.GetNamespace() != ns {
				continue
			}
			out = append(out, ev)
		case <-timeout:
			t.Fatalf("%d of %d events in 60 s", len(out), n)
		}
	}
	return out
}
