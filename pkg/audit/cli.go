package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"github.com/bouncer-policy/bouncer/pkg/report"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// CLIOptions are the flags of bouncer audit.
type CLIOptions struct {
	Config *rest.Config
	// ClusterName labels findings in the human, SARIF and JUnit outputs
	// (their "file"): the kubeconfig context.
	ClusterName string
	// Policies, when set, are audited instead of the cluster's own
	// constraints (files, directories or kustomize directories).
	Policies []string
	// Output is human, json, yaml, sarif, junit, policyreport or openreports.
	Output string
	// Namespace is Bouncer's namespace, where the cluster's Config lives.
	Namespace string
	ChunkSize int64
	Timeout   time.Duration // per review
	Engine    string        // "", rego or cel
	Tool      report.ToolInfo
	Stdout    io.Writer
	Stderr    io.Writer
	// Progress prints progress on Stderr (for a terminal).
	Progress bool
}

// Exit codes of bouncer audit, as bouncer test.
const (
	ExitOK       = 0
	ExitFindings = 1
	ExitInvalid  = 2
)

// RunCLI audits the cluster once, read-only, and writes what it found; it
// returns the process exit code: 1 when something is denied or could not
// be evaluated, 2 when the audit could not run.
func RunCLI(ctx context.Context, o CLIOptions) int {
	code, err := runCLI(ctx, o)
	if err != nil {
		fmt.Fprintf(o.Stderr, "error: %v\n", err)
	}
	return code
}

func runCLI(ctx context.Context, o CLIOptions) (int, error) {
	reportFormat := o.Output == FormatPolicyReport || o.Output == FormatOpenReports
	var w report.Writer
	if !reportFormat {
		var err error
		if w, err = report.New(o.Output, o.Stdout, o.Tool); err != nil {
			return ExitInvalid, fmt.Errorf("%w (or %s, %s)", err, FormatPolicyReport, FormatOpenReports)
		}
	}
	dyn, err := dynamic.NewForConfig(o.Config)
	if err != nil {
		return ExitInvalid, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(o.Config)
	if err != nil {
		return ExitInvalid, err
	}
	e, err := policyset.NewEngine(o.Timeout, o.Engine)
	if err != nil {
		return ExitInvalid, err
	}
	configNS := o.Namespace
	var extraExcluded []string
	var syncKinds []schema.GroupVersionKind
	if len(o.Policies) > 0 {
		set := &policyset.Set{}
		if err := load.Walk(o.Policies, load.Options{}, func(d *load.Document) error { set.Add(d); return nil }); err != nil {
			return ExitInvalid, err
		}
		if set.Empty() {
			return ExitInvalid, errors.New("--policy: no constraints found")
		}
		if err := set.LoadInto(e); err != nil {
			return ExitInvalid, err
		}
		// The policy set's Config, if any, stands in for the cluster's.
		if len(set.Configs) > 0 {
			configNS = ""
			extraExcluded = set.ExcludedNamespaces("audit")
			for _, d := range set.Configs {
				var c apis.Config
				if err := load.Into(d, &c); err == nil {
					syncKinds = append(syncKinds, syncOnly(c)...)
				}
			}
		}
	} else {
		if err := loadClusterPolicies(ctx, dyn, e, o.Stderr); err != nil {
			return ExitInvalid, err
		}
		if len(e.Constraints()) == 0 {
			return ExitInvalid, errors.New("the cluster has no constraints (give a policy set with --policy)")
		}
	}
	if e.UsesInventory() {
		if configNS != "" {
			syncKinds = append(syncKinds, clusterSyncKinds(ctx, dyn, configNS)...)
		}
		syncKinds = append(syncKinds, syncSetKinds(ctx, dyn)...)
		if err := loadInventory(ctx, dyn, disc, e, syncKinds); err != nil {
			return ExitInvalid, err
		}
	}
	var progress func(string, int, int)
	if o.Progress {
		var mu sync.Mutex
		objects := 0
		progress = func(res string, n, findings int) {
			mu.Lock()
			defer mu.Unlock()
			objects += n
			fmt.Fprintf(o.Stderr, "\r\033[Kaudited %d objects (%s)", objects, res)
		}
	}
	a := New(Options{Engine: e, Dynamic: dyn, Discovery: disc, ConfigNamespace: configNS, ChunkSize: o.ChunkSize, Progress: progress})
	if len(extraExcluded) > 0 {
		a.excludeAlso = extraExcluded
	}
	st, err := a.Pass(ctx)
	if o.Progress {
		fmt.Fprintf(o.Stderr, "\r\033[K")
	}
	if err != nil {
		return ExitInvalid, err
	}
	for res, err := range a.ListErrors() {
		fmt.Fprintf(o.Stderr, "warning: %s not audited: %v\n", res, err)
	}
	items := a.Items()
	if reportFormat {
		return ExitOK, writeReports(o.Stdout, o.Output, items, a.Passed(), policyInfo(e))
	}
	sum := report.Summary{Constraints: len(e.Constraints())}
	for _, it := range items {
		obj := &report.Object{File: o.ClusterName, APIVersion: it.Kind.GroupVersion(), Kind: it.Kind.Kind, Namespace: it.Key.Namespace, Name: it.Key.Name}
		for _, f := range it.Findings {
			if f.Action == ActionError {
				obj.Errors = append(obj.Errors, report.Error{ConstraintKind: f.ConstraintKind, ConstraintName: f.ConstraintName, Message: f.Message})
				continue
			}
			obj.Violations = append(obj.Violations, engine.Result{ConstraintKind: f.ConstraintKind, ConstraintName: f.ConstraintName, Template: f.Template, Message: f.Message, EnforcementAction: f.Action})
		}
		sum.Add(obj)
		if err := w.Object(obj); err != nil {
			return ExitInvalid, err
		}
	}
	// Objects without findings are counted, not kept.
	sum.Objects = int(st.Objects)
	if err := w.Close(sum); err != nil {
		return ExitInvalid, err
	}
	if sum.Deny > 0 || sum.Errors > 0 {
		return ExitFindings, nil
	}
	return ExitOK, nil
}

// writeReports prints the report objects of every namespace as YAML.
func writeReports(out io.Writer, format string, items []Item, passed map[string]int64, info map[string]PolicyInfo) error {
	byNS := map[string][]Item{}
	for _, it := range items {
		byNS[it.Key.Namespace] = append(byNS[it.Key.Namespace], it)
	}
	var all []string
	for ns := range byNS {
		all = append(all, ns)
	}
	for ns := range passed {
		if _, ok := byNS[ns]; !ok {
			all = append(all, ns)
		}
	}
	sort.Strings(all)
	first := true
	for _, ns := range all {
		parts, err := BuildReports(format, ns, byNS[ns], info, passed[ns])
		if err != nil {
			return err
		}
		for _, p := range parts {
			b, err := yaml.Marshal(p.Object)
			if err != nil {
				return err
			}
			if !first {
				if _, err := io.WriteString(out, "---\n"); err != nil {
					return err
				}
			}
			first = false
			if _, err := out.Write(b); err != nil {
				return err
			}
		}
	}
	return nil
}

var templateGVR = schema.GroupVersionResource{Group: apis.TemplatesGroup, Version: "v1", Resource: "constrainttemplates"}

// loadClusterPolicies loads the cluster's templates and constraints; one
// that does not compile is reported and left out.
func loadClusterPolicies(ctx context.Context, dyn dynamic.Interface, e *engine.Engine, stderr io.Writer) error {
	list, err := dyn.Resource(templateGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing ConstraintTemplates: %w", err)
	}
	for _, u := range list.Items {
		var t apis.ConstraintTemplate
		if err := decodeInto(u.Object, &t); err != nil {
			fmt.Fprintf(stderr, "warning: ConstraintTemplate %s: %v\n", u.GetName(), err)
			continue
		}
		if _, err := e.AddTemplate(&t); err != nil {
			fmt.Fprintf(stderr, "warning: ConstraintTemplate %s left out: %v\n", u.GetName(), err)
			continue
		}
		kind := t.Spec.CRD.Spec.Names.Kind
		cl, err := dyn.Resource(schema.GroupVersionResource{Group: apis.ConstraintsGroup, Version: "v1beta1", Resource: strings.ToLower(kind)}).List(ctx, metav1.ListOptions{})
		if err != nil {
			fmt.Fprintf(stderr, "warning: listing %s constraints: %v\n", kind, err)
			continue
		}
		for _, cu := range cl.Items {
			var c apis.Constraint
			if err := decodeInto(cu.Object, &c); err != nil {
				fmt.Fprintf(stderr, "warning: %s %s: %v\n", kind, cu.GetName(), err)
				continue
			}
			if _, err := e.AddConstraint(&c); err != nil {
				fmt.Fprintf(stderr, "warning: %s %s left out: %v\n", kind, cu.GetName(), err)
			}
		}
	}
	return nil
}

func syncOnly(c apis.Config) []schema.GroupVersionKind {
	var out []schema.GroupVersionKind
	for _, k := range c.Spec.Sync.SyncOnly {
		out = append(out, schema.GroupVersionKind{Group: k.Group, Version: k.Version, Kind: k.Kind})
	}
	return out
}

func clusterSyncKinds(ctx context.Context, dyn dynamic.Interface, ns string) []schema.GroupVersionKind {
	u, err := dyn.Resource(configGVR).Namespace(ns).Get(ctx, "config", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	var c apis.Config
	if decodeInto(u.Object, &c) != nil {
		return nil
	}
	return syncOnly(c)
}

var syncSetGVR = schema.GroupVersionResource{Group: "syncset.gatekeeper.sh", Version: "v1alpha1", Resource: "syncsets"}

// syncSetKinds reads Gatekeeper's SyncSets (spec.gvks), when the cluster
// serves them.
func syncSetKinds(ctx context.Context, dyn dynamic.Interface) []schema.GroupVersionKind {
	list, err := dyn.Resource(syncSetGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var out []schema.GroupVersionKind
	for _, u := range list.Items {
		var s struct {
			Spec struct {
				GVKs []struct{ Group, Version, Kind string } `json:"gvks"`
			} `json:"spec"`
		}
		if decodeInto(u.Object, &s) != nil {
			continue
		}
		for _, g := range s.Spec.GVKs {
			out = append(out, schema.GroupVersionKind{Group: g.Group, Version: g.Version, Kind: g.Kind})
		}
	}
	return out
}

// loadInventory lists the synced kinds into data.inventory.
func loadInventory(ctx context.Context, dyn dynamic.Interface, disc discovery.DiscoveryInterface, e *engine.Engine, kinds []schema.GroupVersionKind) error {
	if len(kinds) == 0 {
		return nil
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	var objs []map[string]any
	seen := map[schema.GroupVersionKind]bool{}
	for _, gvk := range kinds {
		if seen[gvk] {
			continue
		}
		seen[gvk] = true
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			continue // not served: nothing to sync
		}
		cont := ""
		for {
			list, err := dyn.Resource(m.Resource).List(ctx, metav1.ListOptions{Limit: DefaultChunkSize, Continue: cont})
			if err != nil {
				return fmt.Errorf("listing %s for data.inventory: %w", gvk.Kind, err)
			}
			for _, u := range list.Items {
				u.SetManagedFields(nil)
				objs = append(objs, u.Object)
			}
			if cont = list.GetContinue(); cont == "" {
				break
			}
		}
	}
	return e.SetInventory(ctx, objs)
}

// IsTerminal reports whether f is a terminal (for progress output).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
