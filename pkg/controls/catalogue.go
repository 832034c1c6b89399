package controls

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

//go:embed catalogue/*.yaml
var builtin embed.FS

// Standard is one catalogue file: a standard in a named edition.
type Standard struct {
	// ID is what --standard and the bouncer.dev/<ID> annotation use.
	ID      string `json:"standard"`
	Name    string `json:"name"`
	Edition string `json:"edition"`
	// Groups order the summary lines (e.g. PSS baseline, restricted).
	Groups []string `json:"groups,omitempty"`
	// Cumulative says each group includes the groups before it, as PSS
	// restricted includes every baseline control.
	Cumulative bool      `json:"cumulative,omitempty"`
	Controls   []Control `json:"controls"`
}

// Control is one recommendation of a standard.
type Control struct {
	ID    string `json:"id"`
	Group string `json:"group,omitempty"`
	Title string `json:"title"`
	// AnyConstraint: every constraint counts, whatever its template, for
	// a control that asks only that some policy be enforced (CIS 5.2.1).
	AnyConstraint bool `json:"anyConstraint,omitempty"`
}

// builtinOrder is the order standards are reported in: the Kubernetes
// project's own first, then the benchmark, the guidance, the threat model.
var builtinOrder = []string{"pss", "cis", "nsa", "mitre"}

// Builtin returns the catalogue compiled into the binary, in builtinOrder.
func Builtin() ([]Standard, error) {
	names, err := fs.Glob(builtin, "catalogue/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("listing the builtin catalogue: %w", err)
	}
	out := make([]Standard, 0, len(names))
	for _, name := range names {
		data, err := builtin.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		s, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path.Base(name), err)
		}
		out = append(out, s)
	}
	rank := func(id string) int {
		if i := slices.Index(builtinOrder, id); i >= 0 {
			return i
		}
		return len(builtinOrder)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ri, rj := rank(out[i].ID), rank(out[j].ID); ri != rj {
			return ri < rj
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Parse reads one catalogue file and checks it, so that a team's own
// standard with a typo is refused rather than reported as all missing.
func Parse(data []byte) (Standard, error) {
	var s Standard
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return Standard{}, fmt.Errorf("parsing catalogue: %w", err)
	}
	if err := s.check(); err != nil {
		return Standard{}, err
	}
	return s, nil
}

func (s Standard) check() error {
	switch {
	case s.ID == "":
		return fmt.Errorf("catalogue has no standard id")
	case s.Edition == "":
		return fmt.Errorf("standard %q names no edition", s.ID)
	case len(s.Controls) == 0:
		return fmt.Errorf("standard %q has no controls", s.ID)
	case strings.ContainsAny(s.ID, ", /") || s.ID != strings.ToLower(s.ID):
		return fmt.Errorf("standard id %q must be lower case, without commas, slashes or spaces (it names the bouncer.dev/%s annotation)", s.ID, s.ID)
	}
	groups := map[string]bool{}
	for _, g := range s.Groups {
		if groups[g] {
			return fmt.Errorf("standard %q: group %q listed twice", s.ID, g)
		}
		groups[g] = true
	}
	seen := map[string]bool{}
	for i, c := range s.Controls {
		if c.ID == "" || c.Title == "" {
			return fmt.Errorf("standard %q: control %d needs an id and a title", s.ID, i)
		}
		if strings.ContainsAny(c.ID, ", ") {
			return fmt.Errorf("standard %q: control id %q may not hold commas or spaces (annotations list ids with commas)", s.ID, c.ID)
		}
		if seen[c.ID] {
			return fmt.Errorf("standard %q: control %q listed twice", s.ID, c.ID)
		}
		seen[c.ID] = true
		if len(s.Groups) > 0 && !groups[c.Group] {
			return fmt.Errorf("standard %q: control %q is in group %q, which groups does not list", s.ID, c.ID, c.Group)
		}
	}
	return nil
}

// Annotation is the template annotation that maps templates to the
// standard's controls (comma-separated ids).
func (s Standard) Annotation() string { return "bouncer.dev/" + s.ID }

// Control returns the standard's control with the given id.
func (s Standard) Control(id string) (Control, bool) {
	i := slices.IndexFunc(s.Controls, func(c Control) bool { return c.ID == id })
	if i < 0 {
		return Control{}, false
	}
	return s.Controls[i], true
}

// InGroup lists the controls a group's summary counts: the group's own,
// and for a cumulative standard those of the groups before it too. A
// standard without groups has one unnamed group holding every control.
func (s Standard) InGroup(group string) []Control {
	if len(s.Groups) == 0 {
		return s.Controls
	}
	upTo := slices.Index(s.Groups, group)
	var out []Control
	for _, c := range s.Controls {
		i := slices.Index(s.Groups, c.Group)
		if i == upTo || (s.Cumulative && i >= 0 && i < upTo) {
			out = append(out, c)
		}
	}
	return out
}

// Catalogue is the builtin standards followed by the files given, each a
// team's own standard in the builtin files' format. A file may not reuse
// a standard id, so two catalogues never silently disagree about one.
func Catalogue(files ...string) ([]Standard, error) {
	out, err := Builtin()
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading catalogue: %w", err)
		}
		s, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if slices.ContainsFunc(out, func(o Standard) bool { return o.ID == s.ID }) {
			return nil, fmt.Errorf("%s: standard %q is already in the catalogue", f, s.ID)
		}
		out = append(out, s)
	}
	return out, nil
}

// Select returns the standards whose ids are listed, in the catalogue's
// order; no ids selects every standard.
func Select(catalogue []Standard, ids []string) ([]Standard, error) {
	if len(ids) == 0 {
		return catalogue, nil
	}
	known := make([]string, len(catalogue))
	for i, s := range catalogue {
		known[i] = s.ID
	}
	for _, id := range ids {
		if !slices.Contains(known, strings.ToLower(id)) {
			return nil, fmt.Errorf("unknown standard %q: want one of %s", id, strings.Join(known, ", "))
		}
	}
	var out []Standard
	for _, s := range catalogue {
		if slices.ContainsFunc(ids, func(id string) bool { return strings.EqualFold(id, s.ID) }) {
			out = append(out, s)
		}
	}
	return out, nil
}
