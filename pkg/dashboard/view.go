package dashboard

import (
	"cmp"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/controls"
	"github.com/bouncer-policy/bouncer/pkg/fleet"
	"github.com/bouncer-policy/bouncer/pkg/library"
)

// Severities in the order charts show them; "unset" is a template without
// bouncer.dev/severity.
var severities = []string{"critical", "high", "medium", "low", "unset"}

// Unreachable is the matrix cell of a cluster that could not be read.
const Unreachable = "unreachable"

// statuses in the order coverage bars stack them.
var statuses = []controls.Status{controls.Enforced, controls.EnforcedWithViolations, controls.Partial, controls.Monitored, controls.Missing}

// target adapts a cluster read by pkg/fleet to what pkg/controls computes
// coverage on.
func target(d fleet.Detail) controls.Target {
	t := controls.Target{Name: d.Status.Name, Exempt: d.Exempt}
	for _, tm := range d.Templates {
		t.Templates = append(t.Templates, controls.Template{Name: tm.Name, Kind: tm.Kind, Annotations: tm.Annotations})
	}
	for _, c := range d.Constraints {
		t.Constraints = append(t.Constraints, controls.Constraint{Kind: c.Kind, Name: c.Name, Action: c.Action,
			Namespaces: c.Namespaces, ExcludedNamespaces: c.ExcludedNamespaces, Selective: c.Selective, TotalViolations: c.TotalViolations})
	}
	return t
}

// severityCounts sums totalViolations by the template's severity.
func severityCounts(d fleet.Detail) map[string]int {
	out := map[string]int{}
	for _, c := range d.Constraints {
		sev := strings.ToLower(c.Severity())
		if !slices.Contains(severities, sev) || sev == "" {
			sev = "unset"
		}
		out[sev] += c.TotalViolations
	}
	return out
}

// coverage is one cluster's count of controls per status for a standard.
type coverage struct {
	Standard controls.Standard
	Counts   map[controls.Status]int
	Total    int
}

// Count is the number of controls in status s.
func (c coverage) Count(s string) int { return c.Counts[controls.Status(s)] }

func (c coverage) Enforced() int {
	return c.Counts[controls.Enforced] + c.Counts[controls.EnforcedWithViolations]
}

func standardCoverage(t controls.Target, s controls.Standard) coverage {
	cv := coverage{Standard: s, Counts: map[controls.Status]int{}, Total: len(s.Controls)}
	for _, c := range s.Controls {
		cv.Counts[controls.Cover(t, s, c.ID).Status]++
	}
	return cv
}

// count is one row of a "top N" list.
type count struct {
	Label string
	N     int
}

// topViolations counts the listed violations (status.violations, capped
// per constraint) by namespace and by object.
func topViolations(d fleet.Detail, n int) (namespaces, objects []count) {
	byNS, byObj := map[string]int{}, map[string]int{}
	for _, c := range d.Constraints {
		for _, v := range c.Violations {
			ns := v.Namespace
			if ns == "" {
				ns = "(cluster-scoped)"
			}
			byNS[ns]++
			obj := v.Kind + " " + v.Name
			if v.Namespace != "" {
				obj = v.Kind + " " + v.Namespace + "/" + v.Name
			}
			byObj[obj]++
		}
	}
	return top(byNS, n), top(byObj, n)
}

func top(m map[string]int, n int) []count {
	out := make([]count, 0, len(m))
	for k, v := range m {
		out = append(out, count{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		return cmp.Or(cmp.Compare(out[j].N, out[i].N), strings.Compare(out[i].Label, out[j].Label)) < 0
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

var cveID = regexp.MustCompile(`^CVE-\d{4}-\d{4,}$`)

// knownCVEs lists the CVE ids the library's policies and the clusters'
// templates name, sorted.
func knownCVEs(f Fleet, lib []library.Policy) []string {
	seen := map[string]bool{}
	add := func(list string) {
		for _, id := range strings.Split(list, ",") {
			if id = strings.ToUpper(strings.TrimSpace(id)); cveID.MatchString(id) {
				seen[id] = true
			}
		}
	}
	for _, p := range lib {
		add(strings.Join(p.CVEs, ","))
	}
	for _, d := range f.Clusters {
		for _, t := range d.Templates {
			add(t.Annotations[library.AnnotationCVEs])
		}
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// protecting names the deny constraints that cover every namespace for
// cve (compared case-insensitively: annotations are written by hand).
func protecting(t controls.Target, cve string) []string {
	return controls.Protecting(t, library.AnnotationCVEs, cve)
}
