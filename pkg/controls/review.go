package controls

import (
	"fmt"
	"regexp"
	"strings"
)

// Entry is one control's coverage across every target.
type Entry struct {
	Standard string         `json:"standard"`
	Control  string         `json:"control"`
	Title    string         `json:"title"`
	Group    string         `json:"group,omitempty"`
	Targets  []TargetResult `json:"targets"`
}

// TargetResult is one target's coverage of one control.
type TargetResult struct {
	Name        string   `json:"name"`
	Status      Status   `json:"status"`
	Constraints []string `json:"constraints"`
}

// Summary counts, for one target, the enforced controls of one group of a
// standard (all of it for a standard without groups).
type Summary struct {
	Standard string `json:"standard"`
	Name     string `json:"name"`
	Edition  string `json:"edition"`
	Group    string `json:"group,omitempty"`
	Target   string `json:"target"`
	// Enforced counts enforced and enforced-with-violations controls:
	// admission refuses new breaches of both.
	Enforced int `json:"enforced"`
	Total    int `json:"total"`
}

// Line is the summary as printed, e.g. "PSS restricted 14/19 enforced".
func (s Summary) Line() string {
	label := s.Name
	if s.Group != "" {
		label += " " + s.Group
	}
	return fmt.Sprintf("%s %d/%d enforced", label, s.Enforced, s.Total)
}

// Review computes every control of the standards for every target, in
// catalogue order, and the summaries per standard, group and target.
func Review(standards []Standard, targets []Target) ([]Entry, []Summary) {
	var entries []Entry
	var sums []Summary
	for _, s := range standards {
		byControl := map[string]map[string]Status{}
		for _, c := range s.Controls {
			e := Entry{Standard: s.ID, Control: c.ID, Title: c.Title, Group: c.Group}
			byControl[c.ID] = map[string]Status{}
			for _, t := range targets {
				r := Cover(t, s, c.ID)
				if r.Constraints == nil {
					r.Constraints = []string{}
				}
				e.Targets = append(e.Targets, TargetResult{Name: t.Name, Status: r.Status, Constraints: r.Constraints})
				byControl[c.ID][t.Name] = r.Status
			}
			entries = append(entries, e)
		}
		groups := s.Groups
		if len(groups) == 0 {
			groups = []string{""}
		}
		for _, t := range targets {
			for _, g := range groups {
				sum := Summary{Standard: s.ID, Name: s.Name, Edition: s.Edition, Group: g, Target: t.Name}
				for _, c := range s.InGroup(g) {
					sum.Total++
					if st := byControl[c.ID][t.Name]; st == Enforced || st == EnforcedWithViolations {
						sum.Enforced++
					}
				}
				sums = append(sums, sum)
			}
		}
	}
	return entries, sums
}

// AnnotationCVEs lists, on a template, the CVEs its policy mitigates.
const AnnotationCVEs = "bouncer.dev/cves"

// Exposure is one target's standing against a CVE.
type Exposure struct {
	Name string `json:"name"`
	// Protected: a deny constraint of a template listing the CVE covers
	// every namespace but the exemptions.
	Protected bool `json:"protected"`
	// Coverage is how far the CVE's templates are enforced: enforced or
	// enforced-with-violations when protected; partial or monitored when
	// constraints exist that fall short, listed in Constraints.
	Coverage    Status   `json:"coverage"`
	Constraints []string `json:"constraints"`
}

// Drill reports, for every target, whether the CVE is closed and by which
// constraints, or which constraints fall short of closing it.
func Drill(targets []Target, cve string) []Exposure {
	out := make([]Exposure, 0, len(targets))
	for _, t := range targets {
		r := CoverValue(t, AnnotationCVEs, cve)
		if r.Constraints == nil {
			r.Constraints = []string{}
		}
		out = append(out, Exposure{
			Name:        t.Name,
			Protected:   r.Status == Enforced || r.Status == EnforcedWithViolations,
			Coverage:    r.Status,
			Constraints: r.Constraints,
		})
	}
	return out
}

var cveID = regexp.MustCompile(`^CVE-\d{4}-\d{4,}$`)

// ValidCVE reports whether id is spelled as a CVE id (CVE-YYYY-NNNN...).
func ValidCVE(id string) bool { return cveID.MatchString(strings.ToUpper(id)) }
