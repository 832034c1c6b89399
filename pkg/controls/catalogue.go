// Package controls holds the standards catalogue (PSS, CIS, NSA/CISA,
// MITRE ATT&CK) and computes how far a set of constraints covers it.
package controls

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"

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
	Groups   []string  `json:"groups,omitempty"`
	Controls []Control `json:"controls"`
}

// Control is one recommendation of a standard.
type Control struct {
	ID    string `json:"id"`
	Group string `json:"group,omitempty"`
	Title string `json:"title"`
}

// Builtin returns the catalogue compiled into the binary, sorted by id.
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
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
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
	}
	groups := map[string]bool{}
	for _, g := range s.Groups {
		groups[g] = true
	}
	seen := map[string]bool{}
	for i, c := range s.Controls {
		if c.ID == "" || c.Title == "" {
			return fmt.Errorf("standard %q: control %d needs an id and a title", s.ID, i)
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
