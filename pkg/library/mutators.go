package library

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/bouncer-policy/bouncer/library"
	"github.com/bouncer-policy/bouncer/pkg/apis"
)

// MutatorsDir holds the library's mutators (Gatekeeper Assign,
// AssignMetadata, ModifySet), several to a file.
const MutatorsDir = "mutators"

// AnnotationSatisfies names the library policy a mutator's default
// satisfies.
const AnnotationSatisfies = "bouncer.dev/satisfies"

// Mutator is one library mutator.
type Mutator struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Description string   `json:"description"`
	Bundles     []string `json:"bundles"`
	// Satisfies is the library policy the mutator's default satisfies, if
	// any.
	Satisfies string `json:"satisfies,omitempty"`
	// File is the file under library/ holding it.
	File string `json:"file"`
	// Object is the mutator document.
	Object map[string]any `json:"-"`
}

// Mutators parses the embedded library's mutators, sorted by name.
func Mutators() ([]Mutator, error) { return LoadMutators(library.FS) }

// LoadMutators parses every mutators/*.yaml of fsys.
func LoadMutators(fsys fs.FS) ([]Mutator, error) {
	files, err := fs.Glob(fsys, path.Join(MutatorsDir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var out []Mutator
	var errs []error
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				errs = append(errs, fmt.Errorf("library/%s: %w", f, err))
				break
			}
			if obj == nil {
				continue
			}
			var m apis.Mutator
			if err := fromMap(obj, &m); err != nil {
				errs = append(errs, fmt.Errorf("library/%s: %w", f, err))
				continue
			}
			a := m.GetAnnotations()
			out = append(out, Mutator{
				Name: m.Name, Kind: m.Kind, Description: a[AnnotationDescription],
				Bundles: splitList(a[AnnotationBundles]), Satisfies: a[AnnotationSatisfies],
				File: f, Object: obj,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(errs...)
}

func fromMap(obj map[string]any, into any) error {
	b, err := yaml.Marshal(obj)
	if err != nil {
		return err
	}
	return yaml.Unmarshal(b, into)
}
