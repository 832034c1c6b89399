// Package corpus holds what the benchmarks feed both engines: the built-in
// library's templates and sample constraints (read from the library the
// bouncer binary embeds), its expansion templates, and generated Pods with a
// realistic mix of compliant and violating specs across many namespaces.
// It must not import Gatekeeper: the conversion for frameworks lives with
// the benchmark that needs it.
package corpus

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/bouncer-policy/bouncer/library"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

// Policy is one library directory: its template and sample constraints.
type Policy struct {
	Dir         string
	Template    *load.Document
	Constraints []*load.Document
}

// Library is the full built-in library.
type Library struct {
	Policies   []Policy
	Expansions []*load.Document
}

// Load reads every library policy (template.yaml + constraint*.yaml) and the
// expansion templates from the embedded library.
func Load() (*Library, error) {
	lib := &Library{}
	dirs, err := fs.ReadDir(library.FS, ".")
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		if d.Name() == "expansion" {
			docs, err := readAll(path.Join(d.Name(), "expansion.yaml"))
			if err != nil {
				return nil, err
			}
			lib.Expansions = docs
			continue
		}
		files, err := fs.ReadDir(library.FS, d.Name())
		if err != nil {
			return nil, err
		}
		p := Policy{Dir: d.Name()}
		for _, f := range files {
			name := f.Name()
			if name != "template.yaml" && !(strings.HasPrefix(name, "constraint") && strings.HasSuffix(name, ".yaml")) {
				continue
			}
			docs, err := readAll(path.Join(d.Name(), name))
			if err != nil {
				return nil, err
			}
			for _, doc := range docs {
				switch policyset.Classify(doc) {
				case policyset.Template:
					p.Template = doc
				case policyset.Constraint:
					p.Constraints = append(p.Constraints, doc)
				}
			}
		}
		if p.Template == nil {
			continue
		}
		lib.Policies = append(lib.Policies, p)
	}
	sort.Slice(lib.Policies, func(i, j int) bool { return lib.Policies[i].Dir < lib.Policies[j].Dir })
	return lib, nil
}

func readAll(name string) ([]*load.Document, error) {
	b, err := fs.ReadFile(library.FS, name)
	if err != nil {
		return nil, err
	}
	var docs []*load.Document
	err = load.Read("library/"+name, bytes.NewReader(b), func(d *load.Document) error {
		docs = append(docs, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return docs, nil
}

// Set returns the policies as a policyset (templates, constraints and, with
// expansion, the expansion templates), filtered by keep (nil keeps all).
func (l *Library) Set(expansion bool, keep func(p Policy) bool) *policyset.Set {
	s := &policyset.Set{}
	for _, p := range l.Policies {
		if keep != nil && !keep(p) {
			continue
		}
		s.Add(p.Template)
		for _, c := range p.Constraints {
			s.Add(c)
		}
	}
	if expansion {
		for _, x := range l.Expansions {
			s.Add(x)
		}
	}
	return s
}

// Constraints counts the sample constraints of the policies kept.
func (l *Library) Constraints() int {
	n := 0
	for _, p := range l.Policies {
		n += len(p.Constraints)
	}
	return n
}
