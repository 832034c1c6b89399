package load

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// ErrOutsideRoot is wrapped by the error for a kustomization that reaches
// a file or directory outside Options.Root.
var ErrOutsideRoot = errors.New("outside the repository")

// rootedFS is the disk seen through a root: every path kustomize reads
// must lie inside root once symbolic links are followed, and nothing is
// written. A commit's kustomization may name "../../" bases, absolute
// paths or links; what they lead to (the server's own files, a mounted
// token) is not part of the commit.
type rootedFS struct {
	disk filesys.FileSystem
	root string // absolute, symbolic links resolved
}

func newRootedFS(root string) (*rootedFS, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("repository root: %w", err)
	}
	return &rootedFS{disk: filesys.MakeFsOnDisk(), root: real}, nil
}

// check refuses path unless it resolves inside the root. A path that does
// not exist is checked as written, so kustomize still reports it missing.
func (f *rootedFS) check(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		real = abs
	}
	if !inside(f.root, real) {
		return fmt.Errorf("%s: %w %s", path, ErrOutsideRoot, f.root)
	}
	return nil
}

func inside(root, path string) bool {
	r, err := filepath.Rel(root, path)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator))
}

var errReadOnly = errors.New("kustomize may not write while rendering a commit")

func (f *rootedFS) Create(string) (filesys.File, error) { return nil, errReadOnly }
func (f *rootedFS) Mkdir(string) error                  { return errReadOnly }
func (f *rootedFS) MkdirAll(string) error               { return errReadOnly }
func (f *rootedFS) RemoveAll(string) error              { return errReadOnly }
func (f *rootedFS) WriteFile(string, []byte) error      { return errReadOnly }

func (f *rootedFS) Open(path string) (filesys.File, error) {
	if err := f.check(path); err != nil {
		return nil, err
	}
	return f.disk.Open(path)
}

func (f *rootedFS) IsDir(path string) bool { return f.check(path) == nil && f.disk.IsDir(path) }

func (f *rootedFS) Exists(path string) bool { return f.check(path) == nil && f.disk.Exists(path) }

func (f *rootedFS) ReadDir(path string) ([]string, error) {
	if err := f.check(path); err != nil {
		return nil, err
	}
	return f.disk.ReadDir(path)
}

func (f *rootedFS) CleanedAbs(path string) (filesys.ConfirmedDir, string, error) {
	if err := f.check(path); err != nil {
		return "", "", err
	}
	return f.disk.CleanedAbs(path)
}

// Glob leaves out matches outside the root.
func (f *rootedFS) Glob(pattern string) ([]string, error) {
	all, err := f.disk.Glob(pattern)
	if err != nil {
		return nil, err
	}
	var in []string
	for _, p := range all {
		if f.check(p) == nil {
			in = append(in, p)
		}
	}
	return in, nil
}

func (f *rootedFS) ReadFile(path string) ([]byte, error) {
	if err := f.check(path); err != nil {
		return nil, err
	}
	return f.disk.ReadFile(path)
}

// Walk does not enter or report what lies outside the root.
func (f *rootedFS) Walk(path string, fn filepath.WalkFunc) error {
	if err := f.check(path); err != nil {
		return err
	}
	return f.disk.Walk(path, func(p string, info os.FileInfo, err error) error {
		if cerr := f.check(p); cerr != nil {
			if info != nil && info.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		return fn(p, info, err)
	})
}
