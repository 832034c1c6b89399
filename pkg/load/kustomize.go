package load

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var kustomizationFiles = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// ErrRemoteResource is wrapped by the error for a kustomization that names
// a remote resource while Options.AllowRemote is off.
var ErrRemoteResource = errors.New("remote resources are not fetched")

// IsKustomization reports whether dir holds a kustomization file.
func IsKustomization(dir string) bool { return KustomizationFile(dir) != "" }

// KustomizationFile is the kustomization file kustomize reads in dir, or
// "" when dir holds none.
func KustomizationFile(dir string) string {
	for _, f := range kustomizationFiles {
		p := filepath.Join(dir, f)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// Kustomize is KustomizeContext without cancellation, offline.
func Kustomize(dir string, fn func(*Document) error) error {
	return KustomizeContext(context.Background(), dir, Options{}, fn)
}

// KustomizeContext renders a kustomize directory and calls fn for each
// resource. Locations point at the kustomization file, as the rendered
// objects have no single source line. Unless opts.AllowRemote, every
// kustomization it reaches is checked first and one naming a remote
// resource is an error: kustomize itself would fetch it, and a review
// of pull requests must not make requests on their behalf.
func KustomizeContext(ctx context.Context, dir string, opts Options, fn func(*Document) error) error {
	file := KustomizationFile(dir)
	if file == "" {
		file = dir
	}
	if err := ctx.Err(); err != nil {
		return &Error{File: file, Err: err}
	}
	if !opts.AllowRemote {
		if err := checkOffline(dir, opts, map[string]bool{}); err != nil {
			return err
		}
	}
	disk := filesys.MakeFsOnDisk()
	if opts.Root != "" {
		rooted, err := newRootedFS(opts.Root)
		if err != nil {
			return &Error{File: dir, Err: err}
		}
		if err := rooted.check(dir); err != nil {
			return &Error{File: dir, Err: err}
		}
		disk = rooted
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(disk, dir)
	if err != nil {
		return &Error{File: dir, Err: fmt.Errorf("kustomize build: %w", err)}
	}
	for i, r := range rm.Resources() {
		if err := ctx.Err(); err != nil {
			return &Error{File: file, Err: err}
		}
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

// pathFields are the kustomization fields (and fields of the builtin
// generator and transformer configs) whose values kustomize loads as
// files, directories or git repositories: each may name a remote one.
// Lower case: kustomize decodes them with encoding/json, which matches
// field names regardless of case.
var pathFields = map[string]bool{
	"resources": true, "components": true, "bases": true, "crds": true, "configurations": true,
	"generators": true, "transformers": true, "validators": true, "patchesstrategicmerge": true,
	"path": true, "paths": true, "files": true, "envs": true, "env": true,
	"repo": true, "charthome": true, "valuesfile": true, "additionalvaluesfiles": true,
}

// pluginFields hold generator, transformer and validator configs: inline
// YAML, local files of configs, or directories of kustomizations.
var pluginFields = map[string]bool{"generators": true, "transformers": true, "validators": true}

// checkOffline walks the kustomization in dir and the local ones it uses.
// A file it cannot read is an error rather than left to kustomize, which
// might read it differently and fetch what it names.
func checkOffline(dir string, opts Options, seen map[string]bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil || seen[abs] {
		return nil
	}
	seen[abs] = true
	file := KustomizationFile(dir)
	if file == "" {
		return nil
	}
	var k map[string]any
	if err := readConfig(file, opts, func(d *Document) error { k = d.Object; return nil }); err != nil {
		return err
	}
	return checkValue(dir, file, "", k, opts, seen)
}

// readConfig reads a kustomization or plugin config file to check it.
func readConfig(p string, opts Options, fn func(*Document) error) error {
	f, err := os.Open(p)
	if err != nil {
		return &Error{File: p, Err: errors.Unwrap(err)}
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return &Error{File: p, Err: errors.New("not a regular file")}
	}
	var fnErr error
	err = ReadContext(context.Background(), p, f, opts, func(d *Document) error {
		fnErr = fn(d)
		return fnErr
	})
	if err != nil && fnErr == nil {
		return fmt.Errorf("checking for remote resources: %w", err)
	}
	return err
}

func checkValue(dir, file, field string, v any, opts Options, seen map[string]bool) error {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if err := checkValue(dir, file, strings.ToLower(k), e, opts, seen); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := checkValue(dir, file, field, e, opts, seen); err != nil {
				return err
			}
		}
	case string:
		if !pathFields[field] {
			return nil
		}
		if strings.Contains(x, "\n") {
			if !pluginFields[field] {
				return nil // an inline patch: nothing is loaded from it
			}
			var inline any
			if yaml.Unmarshal([]byte(x), &inline) == nil {
				return checkValue(dir, file, field, inline, opts, seen)
			}
			return nil
		}
		p := x
		if field == "files" {
			// key=path
			if _, after, ok := strings.Cut(p, "="); ok {
				p = after
			}
		}
		if isRemote(p) {
			return &Error{File: file, Err: fmt.Errorf("%s: %q is remote, and %w", field, p, ErrRemoteResource)}
		}
		local := p
		if !filepath.IsAbs(local) {
			local = filepath.Join(dir, local)
		}
		if opts.Root != "" {
			rooted, err := newRootedFS(opts.Root)
			if err == nil {
				err = rooted.check(local)
			}
			if err != nil {
				return &Error{File: file, Err: fmt.Errorf("%s: %q: %w", field, p, err)}
			}
		}
		st, err := os.Stat(local)
		if err != nil {
			return nil
		}
		if st.IsDir() {
			return checkOffline(local, opts, seen)
		}
		if pluginFields[field] {
			return readConfig(local, opts, func(d *Document) error {
				return checkValue(dir, local, "", d.Object, opts, seen)
			})
		}
	}
	return nil
}

var scpUser = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]*@`)

// isRemote reports whether kustomize would fetch p rather than read it
// from disk: a URL (http, https, ssh, file or any other scheme), a GitHub
// repository (github.com/org/repo) or an scp-style git address (git@host:repo),
// with or without kustomize's git:: prefix.
func isRemote(p string) bool {
	p = strings.TrimSpace(p)
	if len(p) >= 5 && strings.EqualFold(p[:5], "git::") {
		p = p[5:]
	}
	l := strings.ToLower(p)
	return strings.Contains(l, "://") ||
		strings.HasPrefix(l, "github.com/") || strings.HasPrefix(l, "github.com:") ||
		scpUser.MatchString(p)
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
