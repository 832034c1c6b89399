package load

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

var kustomizationFiles = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// IsKustomization reports whether dir holds a kustomization file.
func IsKustomization(dir string) bool {
	for _, f := range kustomizationFiles {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// Kustomize renders a kustomize directory and calls fn for each resource.
// Locations point at the kustomization file, as the rendered objects have
// no single source line.
func Kustomize(dir string, fn func(*Document) error) error {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return &Error{File: dir, Err: fmt.Errorf("kustomize build: %w", err)}
	}
	file := dir
	for _, f := range kustomizationFiles {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			file = filepath.Join(dir, f)
			break
		}
	}
	for i, r := range rm.Resources() {
		obj, err := r.Map()
		if err != nil {
			return &Error{File: file, Err: fmt.Errorf("kustomize resource %d: %w", i+1, err)}
		}
		if err := fn(&Document{File: file, Line: 1, Index: i, Object: normalizeNumbers(obj).(map[string]any)}); err != nil {
			return err
		}
	}
	return nil
}

// normalizeNumbers gives kustomize's ints the int64 form the JSON decoder
// produces, so every source yields the same values.
func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeNumbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalizeNumbers(e)
		}
		return x
	case int:
		return int64(x)
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
		return x
	default:
		return v
	}
}
