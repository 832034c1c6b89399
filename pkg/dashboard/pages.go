package dashboard

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/controls"
	"github.com/bouncer-policy/bouncer/pkg/fleet"
	"github.com/bouncer-policy/bouncer/pkg/library"
)

// barChart is a horizontal bar chart drawn as inline SVG; each row is one
// bar of stacked segments, sized here so the template only places them.
type barChart struct {
	Title  string
	Height int
	Rows   []barRow
}

type barRow struct {
	Label    string
	Y        int
	Segments []segment
	Value    string
}

type segment struct {
	X, W  float64
	Class string
	Title string
}

const (
	barLeft  = 170 // label column, px
	barWidth = 380
	barStep  = 26
)

// newBarChart lays out rows of segment values; scale is the value a full
// bar stands for.
func newBarChart(title string, scale int, rows []barInput) barChart {
	c := barChart{Title: title, Height: len(rows)*barStep + 8}
	if scale <= 0 {
		scale = 1
	}
	for i, r := range rows {
		row := barRow{Label: r.Label, Y: i*barStep + 4, Value: r.Value}
		x := float64(barLeft)
		for _, s := range r.Parts {
			w := float64(s.N) * barWidth / float64(scale)
			if w > 0 {
				row.Segments = append(row.Segments, segment{X: x, W: w, Class: s.Class, Title: fmt.Sprintf("%s: %d", s.Label, s.N)})
			}
			x += w
		}
		c.Rows = append(c.Rows, row)
	}
	return c
}

type barInput struct {
	Label string
	Value string
	Parts []part
}

type part struct {
	Label, Class string
	N            int
}

// fleetPage is the overview.
type fleetPage struct {
	base
	Clusters   []clusterRow
	Severity   barChart
	Coverage   []barChart
	Legend     []controls.Status
	Severities []string
}

type clusterRow struct {
	fleet.ClusterStatus
	Health     string
	Commits    string
	Total      int
	BySeverity []int // in severities' order
	Coverage   []coverage
}

func syncHealth(s fleet.ClusterStatus) string {
	if s.Error != "" {
		return "Unreachable"
	}
	if len(s.Syncs) == 0 {
		return "no PolicySync"
	}
	ready := 0
	for _, x := range s.Syncs {
		if x.Ready {
			ready++
		}
	}
	if ready == len(s.Syncs) {
		return "Ready"
	}
	return fmt.Sprintf("NotReady %d/%d", len(s.Syncs)-ready, len(s.Syncs))
}

func commits(s fleet.ClusterStatus) string {
	var out []string
	for _, x := range s.Syncs {
		out = append(out, shortCommit(x.Commit))
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ", ")
}

func (h *handler) fleetPage(w http.ResponseWriter, r *http.Request) {
	f, ok := h.snapshot(w, r)
	if !ok {
		return
	}
	p := fleetPage{base: base{Title: "Fleet", Nav: "fleet", ReadAt: f.ReadAt}, Legend: statuses, Severities: severities}
	fleetSev := map[string]int{}
	covRows := make([][]barInput, len(h.o.Standards))
	for _, d := range f.Clusters {
		row := clusterRow{ClusterStatus: d.Status, Health: syncHealth(d.Status), Commits: commits(d.Status), Total: d.Status.Violations.Total()}
		sev := severityCounts(d)
		for _, s := range severities {
			row.BySeverity = append(row.BySeverity, sev[s])
			fleetSev[s] += sev[s]
		}
		t := target(d)
		for i, s := range h.o.Standards {
			if d.Status.Error != "" {
				covRows[i] = append(covRows[i], barInput{Label: d.Status.Name, Value: Unreachable})
				continue
			}
			cv := standardCoverage(t, s)
			row.Coverage = append(row.Coverage, cv)
			in := barInput{Label: d.Status.Name, Value: fmt.Sprintf("%d/%d enforced", cv.Enforced(), cv.Total)}
			for _, st := range statuses {
				in.Parts = append(in.Parts, part{Label: string(st), Class: "st-" + string(st), N: cv.Counts[st]})
			}
			covRows[i] = append(covRows[i], in)
		}
		p.Clusters = append(p.Clusters, row)
	}
	maxSev := 0
	var sevRows []barInput
	for _, s := range severities {
		maxSev = max(maxSev, fleetSev[s])
		sevRows = append(sevRows, barInput{Label: s, Value: fmt.Sprint(fleetSev[s]), Parts: []part{{Label: s, Class: "sev-" + s, N: fleetSev[s]}}})
	}
	p.Severity = newBarChart("Violations by severity (audit totals, all clusters)", maxSev, sevRows)
	for i, s := range h.o.Standards {
		p.Coverage = append(p.Coverage, newBarChart(fmt.Sprintf("%s (%s)", s.Name, s.Edition), len(s.Controls), covRows[i]))
	}
	h.render(w, r, http.StatusOK, "fleet", p)
}

type clusterPage struct {
	base
	Cluster     fleet.ClusterStatus
	Health      string
	Constraints []fleet.Constraint
	Namespaces  []count
	Objects     []count
	Coverage    []coverage
	Exempt      []string
}

func (h *handler) clusterPage(w http.ResponseWriter, r *http.Request) {
	f, ok := h.snapshot(w, r)
	if !ok {
		return
	}
	d, ok := findCluster(f, r.PathValue("name"))
	if !ok {
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("No cluster %q in this dashboard.", r.PathValue("name")))
		return
	}
	p := clusterPage{base: base{Title: d.Status.Name, Nav: "fleet", ReadAt: f.ReadAt}, Cluster: d.Status, Health: syncHealth(d.Status),
		Constraints: d.Constraints, Exempt: d.Exempt}
	p.Namespaces, p.Objects = topViolations(d, 10)
	if d.Status.Error == "" {
		t := target(d)
		for _, s := range h.o.Standards {
			p.Coverage = append(p.Coverage, standardCoverage(t, s))
		}
	}
	h.render(w, r, http.StatusOK, "cluster", p)
}

type constraintPage struct {
	base
	Cluster    string
	Constraint fleet.Constraint
	Standards  []standardIDs
}

type standardIDs struct {
	Name, IDs string
}

func (h *handler) constraintPage(w http.ResponseWriter, r *http.Request) {
	f, ok := h.snapshot(w, r)
	if !ok {
		return
	}
	d, ok := findCluster(f, r.PathValue("name"))
	if !ok {
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("No cluster %q in this dashboard.", r.PathValue("name")))
		return
	}
	kind, name := r.PathValue("kind"), r.PathValue("constraint")
	i := slices.IndexFunc(d.Constraints, func(c fleet.Constraint) bool { return strings.EqualFold(c.Kind, kind) && c.Name == name })
	if i < 0 {
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("No constraint %s/%s in cluster %q.", kind, name, d.Status.Name))
		return
	}
	c := d.Constraints[i]
	p := constraintPage{base: base{Title: c.Kind + "/" + c.Name, Nav: "fleet", ReadAt: f.ReadAt}, Cluster: d.Status.Name, Constraint: c}
	for _, s := range h.o.Standards {
		if ids := c.Annotations[s.Annotation()]; ids != "" {
			p.Standards = append(p.Standards, standardIDs{s.Name, ids})
		}
	}
	if ids := c.Annotations[library.AnnotationCVEs]; ids != "" {
		p.Standards = append(p.Standards, standardIDs{"CVEs", ids})
	}
	h.render(w, r, http.StatusOK, "constraint", p)
}

// controlsPage is the matrix: each standard's controls by clusters.
type controlsPage struct {
	base
	Clusters  []string
	Standards []matrix
	Legend    []controls.Status
}

type matrix struct {
	Standard controls.Standard
	Rows     []matrixRow
	Summary  []string // per cluster, "n/m enforced"
}

type matrixRow struct {
	Control controls.Control
	Cells   []cell
}

type cell struct {
	Status      controls.Status
	Constraints []string
}

func (h *handler) controlsPage(w http.ResponseWriter, r *http.Request) {
	f, ok := h.snapshot(w, r)
	if !ok {
		return
	}
	p := controlsPage{base: base{Title: "Controls", Nav: "controls", ReadAt: f.ReadAt}, Legend: statuses}
	targets := make([]controls.Target, len(f.Clusters))
	for i, d := range f.Clusters {
		p.Clusters = append(p.Clusters, d.Status.Name)
		targets[i] = target(d)
	}
	for _, s := range h.o.Standards {
		m := matrix{Standard: s}
		enforced := make([]int, len(targets))
		for _, c := range s.Controls {
			row := matrixRow{Control: c}
			for i, t := range targets {
				if f.Clusters[i].Status.Error != "" {
					row.Cells = append(row.Cells, cell{Status: Unreachable})
					continue
				}
				res := controls.Cover(t, s, c.ID)
				if res.Status == controls.Enforced || res.Status == controls.EnforcedWithViolations {
					enforced[i]++
				}
				row.Cells = append(row.Cells, cell{Status: res.Status, Constraints: res.Constraints})
			}
			m.Rows = append(m.Rows, row)
		}
		for i := range targets {
			if f.Clusters[i].Status.Error != "" {
				m.Summary = append(m.Summary, Unreachable)
				continue
			}
			m.Summary = append(m.Summary, fmt.Sprintf("%d/%d enforced", enforced[i], len(s.Controls)))
		}
		p.Standards = append(p.Standards, m)
	}
	h.render(w, r, http.StatusOK, "controls", p)
}

type cvesPage struct {
	base
	CVEs []string
}

func (h *handler) cvesPage(w http.ResponseWriter, r *http.Request) {
	f, ok := h.snapshot(w, r)
	if !ok {
		return
	}
	h.render(w, r, http.StatusOK, "cves", cvesPage{base: base{Title: "CVEs", Nav: "cves", ReadAt: f.ReadAt}, CVEs: knownCVEs(f, h.o.Library)})
}

type cvePage struct {
	base
	ID       string
	Clusters []cveCluster
	Exposed  int
	// Unknown counts clusters that could not be read.
	Unknown  int
	Policies []library.Policy
}

type cveCluster struct {
	Name        string
	Error       string
	Constraints []string
}

func (h *handler) cvePage(w http.ResponseWriter, r *http.Request) {
	id := strings.ToUpper(r.PathValue("id"))
	if !cveID.MatchString(id) {
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("%q is not a CVE id (CVE-YYYY-NNNN).", r.PathValue("id")))
		return
	}
	f, ok := h.snapshot(w, r)
	if !ok {
		return
	}
	p := cvePage{base: base{Title: id, Nav: "cves", ReadAt: f.ReadAt}, ID: id,
		Policies: library.Filter{CVE: id}.Apply(h.o.Library)}
	for _, d := range f.Clusters {
		c := cveCluster{Name: d.Status.Name, Error: d.Status.Error}
		if c.Error == "" {
			c.Constraints = protecting(target(d), id)
		}
		switch {
		case c.Error != "":
			p.Unknown++
		case len(c.Constraints) == 0:
			p.Exposed++
		}
		p.Clusters = append(p.Clusters, c)
	}
	h.render(w, r, http.StatusOK, "cve", p)
}
