package engine

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestDefaultEvalCacheFollowsTheMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(80 << 20)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	if got := defaultEvalCacheBytes(); got != 10<<20 {
		t.Errorf("under an 80 MiB limit the cache gets %d bytes, want 10 MiB", got)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if got := defaultEvalCacheBytes(); got != DefaultEvalCacheBytes {
		t.Errorf("without a limit the cache gets %d bytes, want %d", got, DefaultEvalCacheBytes)
	}
	debug.SetMemoryLimit(4 << 30)
	if got := defaultEvalCacheBytes(); got != DefaultEvalCacheBytes {
		t.Errorf("under a 4 GiB limit the cache gets %d bytes, want %d", got, DefaultEvalCacheBytes)
	}
}
