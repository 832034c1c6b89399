package load

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadCancelWhileWaiting: a read blocked on input that never comes
// (sleep 60 | bouncer test -) returns once the context is cancelled.
func TestReadCancelWhileWaiting(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- ReadContext(ctx, "<stdin>", pr, Options{}, func(d *Document) error {
			got <- d.Name()
			return nil
		})
	}()
	// io.Pipe hands over a write only to a reader: once it returns, the
	// document is inside ReadContext, which then waits for more.
	if _, err := pw.Write([]byte(cm + "---\n")); err != nil {
		t.Fatal(err)
	}
	if name := <-got; name != "first" {
		t.Fatalf("read %q", name)
	}
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	var le *Error
	if !errors.As(err, &le) || le.File != "<stdin>" {
		t.Errorf("error %v: want it located in <stdin>", err)
	}
}

// TestWalkCancelled: a cancelled walk reads nothing more, from files too.
func TestWalkCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	n := 0
	err := WalkContext(ctx, []string{"testdata/multi.yaml"}, Options{}, func(*Document) error { n++; return nil })
	if !errors.Is(err, context.Canceled) || n != 0 {
		t.Errorf("%d documents, error %v; want none and context.Canceled", n, err)
	}
	err = WalkContext(ctx, []string{"testdata/kustomize"}, Options{}, func(*Document) error { n++; return nil })
	if !errors.Is(err, context.Canceled) || n != 0 {
		t.Errorf("kustomize: %d documents, error %v; want none and context.Canceled", n, err)
	}
}

// TestDirectoryNamedPipe: a pipe under a manifest's name in a directory is
// refused; opening it would wait for a writer for ever.
func TestDirectoryNamedPipe(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(cm), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "b.yaml"), 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	n := 0
	err := Walk([]string{dir}, Options{}, func(*Document) error { n++; return nil })
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "b.yaml")+": not a regular file") {
		t.Errorf("error %v, want b.yaml: not a regular file", err)
	}
	if n != 1 {
		t.Errorf("%d documents before the pipe, want 1", n)
	}
}
