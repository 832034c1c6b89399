//go:build !unix

package gitsource

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// locks serialises fetches into one cache directory within the process;
// without flock, two processes sharing a cache directory are not guarded.
var locks sync.Map // cleaned dir → chan struct{} (capacity 1)

func lockDir(ctx context.Context, dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("git: cache directory: %w", err)
	}
	ch, _ := locks.LoadOrStore(filepath.Clean(dir), make(chan struct{}, 1))
	sem := ch.(chan struct{})
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("git: waiting for the lock on %s: %w", dir, ctx.Err())
	}
}
