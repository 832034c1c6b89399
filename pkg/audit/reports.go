package audit

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Report formats.
const (
	FormatPolicyReport = "policyreport" // wgpolicyk8s.io/v1alpha2
	FormatOpenReports  = "openreports"  // openreports.io/v1alpha1
)

// reportKinds are the apiVersion and kinds of one format: namespaced, then
// cluster-scoped.
type reportKinds struct {
	Group, Version           string
	Namespaced, Cluster      string
	NamespacedRes, ClusterRs string
}

var formats = map[string]reportKinds{
	FormatPolicyReport: {Group: "wgpolicyk8s.io", Version: "v1alpha2", Namespaced: "PolicyReport", Cluster: "ClusterPolicyReport", NamespacedRes: "policyreports", ClusterRs: "clusterpolicyreports"},
	FormatOpenReports:  {Group: "openreports.io", Version: "v1alpha1", Namespaced: "Report", Cluster: "ClusterReport", NamespacedRes: "reports", ClusterRs: "clusterreports"},
}

// Labels on every report the audit writes, so a new leader finds (and
// prunes) what an earlier one left.
const (
	labelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "bouncer"
	// ReportName is the name of a namespace's first report part; further
	// parts are ReportName-2, ReportName-3, ...
	ReportName = "bouncer-audit"
	// Source is the source field of every result.
	Source = "bouncer"
)

// maxReportBytes keeps every report part far below etcd's default 1.5 MiB
// request limit, whatever the length of messages.
const maxReportBytes = 512 << 10

// PolicyInfo is what reports say about a constraint besides its findings.
type PolicyInfo struct {
	Severity string // critical|high|medium|low|info, or empty
	Category string
}

// policyInfo reads severity and category from the constraints' templates.
func policyInfo(e *engine.Engine) map[string]PolicyInfo {
	out := map[string]PolicyInfo{}
	for _, c := range e.Constraints() {
		t := c.Template()
		if t == nil || t.Object == nil {
			continue
		}
		ann := t.Object.GetAnnotations()
		info := PolicyInfo{Severity: severityOf(ann["bouncer.dev/severity"])}
		if b := ann["bouncer.dev/bundles"]; b != "" {
			info.Category = strings.TrimSpace(strings.Split(b, ",")[0])
		}
		out[constraintID(c.Kind, c.Name)] = info
	}
	return out
}

func severityOf(s string) string {
	switch s = strings.ToLower(strings.TrimSpace(s)); s {
	case "critical", "high", "medium", "low", "info":
		return s
	}
	return ""
}

// resultOf maps an enforcement action to a report result: deny and dryrun
// would be (or will be) refused, so fail; warn is warn.
func resultOf(action string) string {
	switch action {
	case ActionError:
		return "error"
	case "warn":
		return "warn"
	}
	return "fail"
}

// reportResults turns items into report results in a stable order.
func reportResults(items []Item, info map[string]PolicyInfo) []map[string]any {
	var out []map[string]any
	for _, it := range items {
		fs := append([]Finding(nil), it.Findings...)
		sortFindings(fs)
		for _, f := range fs {
			pi := info[constraintID(f.ConstraintKind, f.ConstraintName)]
			res := map[string]any{
				"apiVersion": it.Kind.GroupVersion(), "kind": it.Kind.Kind, "name": it.Key.Name,
			}
			if it.Key.Namespace != "" {
				res["namespace"] = it.Key.Namespace
			}
			if it.UID != "" {
				res["uid"] = it.UID
			}
			r := map[string]any{
				"source":    Source,
				"policy":    f.ConstraintName,
				"rule":      f.Template,
				"result":    resultOf(f.Action),
				"scored":    true,
				"timestamp": map[string]any{"seconds": f.Since.Unix(), "nanos": int64(0)},
				"resources": []any{res},
				"message":   f.Message,
				"properties": map[string]any{
					"constraintKind":    f.ConstraintKind,
					"enforcementAction": f.Action,
				},
			}
			if pi.Severity != "" {
				r["severity"] = pi.Severity
			}
			if pi.Category != "" {
				r["category"] = pi.Category
			}
			out = append(out, r)
		}
	}
	return out
}

// BuildReports returns the report parts of one namespace ("" for the
// cluster-scoped report) in one format: several numbered parts when one
// would grow past maxReportBytes, none when there is nothing to report.
//
// Results list what failed, warned or errored; passed is the number of
// (object, constraint) pairs audited without a finding, which are not
// listed one by one (that would be a result per object and constraint) but
// counted in summary.pass of the first part, so summaries add up across
// parts as Policy Reporter adds them.
func BuildReports(format, namespace string, items []Item, info map[string]PolicyInfo, passed int64) ([]*unstructured.Unstructured, error) {
	rk, ok := formats[format]
	if !ok {
		return nil, fmt.Errorf("unknown report format %q (want %s or %s)", format, FormatPolicyReport, FormatOpenReports)
	}
	results := reportResults(items, info)
	var parts [][]map[string]any
	var cur []map[string]any
	size := 0
	for _, r := range results {
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		if len(cur) > 0 && size+len(b) > maxReportBytes {
			parts = append(parts, cur)
			cur, size = nil, 0
		}
		cur = append(cur, r)
		size += len(b) + 1
	}
	if len(cur) > 0 || passed > 0 && len(parts) == 0 {
		parts = append(parts, cur)
	}
	out := make([]*unstructured.Unstructured, 0, len(parts))
	for i, p := range parts {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetAPIVersion(rk.Group + "/" + rk.Version)
		if namespace == "" {
			u.SetKind(rk.Cluster)
		} else {
			u.SetKind(rk.Namespaced)
			u.SetNamespace(namespace)
		}
		u.SetName(partName(i))
		u.SetLabels(map[string]string{labelManagedBy: managedBy})
		if format == FormatOpenReports {
			u.Object["source"] = Source // v1alpha2 has it per result only
		}
		if namespace != "" {
			u.Object["scope"] = map[string]any{"apiVersion": "v1", "kind": "Namespace", "name": namespace}
		}
		sum := map[string]any{"pass": int64(0), "fail": int64(0), "warn": int64(0), "error": int64(0), "skip": int64(0)}
		if i == 0 {
			sum["pass"] = passed
		}
		results := make([]any, len(p))
		for j, r := range p {
			results[j] = r
			k := r["result"].(string)
			sum[k] = sum[k].(int64) + 1
		}
		u.Object["summary"] = sum
		u.Object["results"] = results
		out = append(out, u)
	}
	return out, nil
}

func partName(i int) string {
	if i == 0 {
		return ReportName
	}
	return ReportName + "-" + strconv.Itoa(i+1)
}

// sortReports orders report objects by kind, namespace, name.
func sortReports(us []*unstructured.Unstructured) {
	sort.SliceStable(us, func(i, j int) bool {
		a, b := us[i], us[j]
		if a.GetKind() != b.GetKind() {
			return a.GetKind() < b.GetKind()
		}
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
}
