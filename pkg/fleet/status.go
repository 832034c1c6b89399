package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
)

// The Gatekeeper APIs read here.
var (
	templatesGVR   = schema.GroupVersionResource{Group: "templates.gatekeeper.sh", Version: "v1", Resource: "constrainttemplates"}
	policySyncGVR  = schema.GroupVersionResource{Group: apis.SyncGroup, Version: apis.SyncVersion, Resource: apis.PolicySyncResource}
	constraintsGV  = schema.GroupVersion{Group: "constraints.gatekeeper.sh", Version: "v1beta1"}
	configGVR      = schema.GroupVersionResource{Group: "config.gatekeeper.sh", Version: "v1alpha1", Resource: "configs"}
	defaultTimeout = 15 * time.Second
)

// ClusterStatus is one cluster's policy state.
type ClusterStatus struct {
	Name   string `json:"name"`
	Server string `json:"server"`
	// Error says why the cluster could not be read; the rest is then empty.
	Error string       `json:"error,omitempty"`
	Syncs []SyncStatus `json:"syncs"`
	// Templates counts ConstraintTemplates; TemplatesFailed those whose
	// status reports errors.
	Templates       int `json:"templates"`
	TemplatesFailed int `json:"templatesFailed"`
	// Constraints counts constraints by enforcement action; Enforced those
	// some Bouncer (or Gatekeeper) replica reports enforced.
	Constraints ByAction `json:"constraints"`
	Enforced    int      `json:"enforced"`
	// Violations sums the audit's totalViolations by the constraint's
	// action.
	Violations ByAction `json:"violations"`
	// LastAudit is the newest auditTimestamp of any constraint.
	LastAudit *time.Time `json:"lastAudit,omitempty"`
}

// ByAction counts by enforcement action; actions other than deny, warn
// and dryrun (a scoped action, a typo the webhook refuses) are Other.
type ByAction struct {
	Deny   int `json:"deny"`
	Warn   int `json:"warn"`
	Dryrun int `json:"dryrun"`
	Other  int `json:"other,omitempty"`
}

func (b *ByAction) add(action string, n int) {
	switch strings.ToLower(action) {
	case "", "deny":
		b.Deny += n
	case "warn":
		b.Warn += n
	case "dryrun":
		b.Dryrun += n
	default:
		b.Other += n
	}
}

// Total is the sum over all actions.
func (b ByAction) Total() int { return b.Deny + b.Warn + b.Dryrun + b.Other }

// SyncStatus is one PolicySync's state.
type SyncStatus struct {
	Name    string `json:"name"` // namespace/name
	Repo    string `json:"repo"`
	Commit  string `json:"commit"`
	Ready   bool   `json:"ready"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	Objects int    `json:"objects"`
	Errors  int    `json:"errors"`
}

// Healthy is true when the cluster was read and every PolicySync is Ready.
func (c ClusterStatus) Healthy() bool {
	if c.Error != "" {
		return false
	}
	for _, s := range c.Syncs {
		if !s.Ready {
			return false
		}
	}
	return true
}

// Read reads every target at once, each bounded by a timeout, and returns
// their states in the targets' order. An unreachable cluster has Error
// set; it never fails the others.
func Read(ctx context.Context, targets []Target) []ClusterStatus {
	details := ReadDetails(ctx, targets)
	out := make([]ClusterStatus, len(details))
	for i, d := range details {
		out[i] = d.Status
	}
	return out
}

// ReadDetails is Read with the templates and constraints behind each
// cluster's counts, for the dashboard.
func ReadDetails(ctx context.Context, targets []Target) []Detail {
	out := make([]Detail, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, defaultTimeout)
			defer cancel()
			d, err := readCluster(ctx, t)
			if err != nil {
				d.Status.Error = err.Error()
				d.Templates, d.Constraints, d.Exempt = nil, nil, nil
			}
			out[i] = d
		})
	}
	wg.Wait()
	return out
}

func readCluster(ctx context.Context, t Target) (Detail, error) {
	d := Detail{Status: ClusterStatus{Name: t.Name, Server: t.Config.Host, Syncs: []SyncStatus{}}}
	st := &d.Status
	dyn, err := dynamic.NewForConfig(t.Config)
	if err != nil {
		return d, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(t.Config)
	if err != nil {
		return d, err
	}
	templates, err := listIfServed(ctx, dyn, templatesGVR)
	if err != nil {
		return d, fmt.Errorf("listing ConstraintTemplates: %w", err)
	}
	st.Templates = len(templates)
	byKind := map[string]Template{}
	for _, tpl := range templates {
		if failedTemplate(tpl) {
			st.TemplatesFailed++
		}
		info := templateInfo(tpl)
		d.Templates = append(d.Templates, info)
		byKind[strings.ToLower(info.Kind)] = info
	}
	kinds, err := ConstraintResources(disc)
	if err != nil {
		return d, fmt.Errorf("discovering constraint kinds: %w", err)
	}
	for _, r := range kinds {
		items, err := listIfServed(ctx, dyn, constraintsGV.WithResource(r.Name))
		if err != nil {
			return d, fmt.Errorf("listing %s: %w", r.Kind, err)
		}
		for _, c := range items {
			st.addConstraint(c)
			d.Constraints = append(d.Constraints, constraintInfo(c, r.Kind, byKind[strings.ToLower(r.Kind)]))
		}
	}
	slices.SortFunc(d.Constraints, func(a, b Constraint) int {
		return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name)
	})
	syncs, err := listIfServed(ctx, dyn, policySyncGVR)
	if err != nil {
		return d, fmt.Errorf("listing PolicySyncs: %w", err)
	}
	for _, ps := range syncs {
		st.Syncs = append(st.Syncs, syncStatus(ps))
	}
	slices.SortFunc(st.Syncs, func(a, b SyncStatus) int { return strings.Compare(a.Name, b.Name) })
	configs, err := listIfServed(ctx, dyn, configGVR)
	if err != nil {
		return d, fmt.Errorf("listing Configs: %w", err)
	}
	d.Exempt = exemptNamespaces(configs)
	return d, nil
}

// ConstraintResources lists the listable resources of
// constraints.gatekeeper.sh (one per template kind), sorted by name; none
// when the group is not served.
func ConstraintResources(disc discovery.DiscoveryInterface) ([]metav1.APIResource, error) {
	list, err := disc.ServerResourcesForGroupVersion(constraintsGV.String())
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []metav1.APIResource
	for _, r := range list.APIResources {
		if !strings.Contains(r.Name, "/") && slices.Contains(r.Verbs, "list") {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b metav1.APIResource) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// listIfServed lists gvr in all namespaces; a resource the cluster does not
// serve (no Gatekeeper-compatible engine, no git sync) lists as empty.
func listIfServed(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource) ([]unstructured.Unstructured, error) {
	l, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func failedTemplate(u unstructured.Unstructured) bool {
	pods, _, _ := unstructured.NestedSlice(u.Object, "status", "byPod")
	for _, p := range pods {
		m, _ := p.(map[string]any)
		if errs, _ := m["errors"].([]any); len(errs) > 0 {
			return true
		}
	}
	return false
}

func (st *ClusterStatus) addConstraint(c unstructured.Unstructured) {
	action, _, _ := unstructured.NestedString(c.Object, "spec", "enforcementAction")
	st.Constraints.add(action, 1)
	pods, _, _ := unstructured.NestedSlice(c.Object, "status", "byPod")
	for _, p := range pods {
		if m, _ := p.(map[string]any); m["enforced"] == true {
			st.Enforced++
			break
		}
	}
	if n, found := nestedInt(c.Object, "status", "totalViolations"); found {
		st.Violations.add(action, n)
	}
	if ts, _, _ := unstructured.NestedString(c.Object, "status", "auditTimestamp"); ts != "" {
		if at, err := time.Parse(time.RFC3339, ts); err == nil && (st.LastAudit == nil || at.After(*st.LastAudit)) {
			st.LastAudit = &at
		}
	}
}

func syncStatus(u unstructured.Unstructured) SyncStatus {
	s := SyncStatus{Name: u.GetNamespace() + "/" + u.GetName()}
	s.Repo, _, _ = unstructured.NestedString(u.Object, "spec", "git", "repo")
	s.Commit, _, _ = unstructured.NestedString(u.Object, "status", "lastSyncedCommit")
	s.Objects, _ = nestedInt(u.Object, "status", "sync", "objectCount")
	for _, step := range []string{"source", "rendering", "sync"} {
		errs, _, _ := unstructured.NestedSlice(u.Object, "status", step, "errors")
		s.Errors += len(errs)
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" {
			s.Ready = m["status"] == "True"
			s.Reason, _ = m["reason"].(string)
			s.Message, _ = m["message"].(string)
		}
	}
	return s
}

func sortStrings(s []string) { slices.Sort(s) }

// nestedInt reads an integer field whether it was decoded as int64 (the
// API machinery's JSON) or float64 (encoding/json).
func nestedInt(obj map[string]any, fields ...string) (int, bool) {
	v, found, _ := unstructured.NestedFieldNoCopy(obj, fields...)
	switch n := v.(type) {
	case int64:
		return int(n), found
	case float64:
		return int(n), found
	}
	return 0, false
}
