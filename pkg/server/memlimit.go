package server

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitShare is the part of a container's memory limit the Go
// runtime aims to stay under; the rest is for what it does not count
// (stacks of cgo, fragmentation) and for bursts.
const memoryLimitShare = 0.8

// cgroupMemoryMax is where cgroup v2 publishes the container's limit.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// setMemoryLimit makes the garbage collector work harder as the heap
// nears the container's memory limit, instead of letting evaluation
// garbage grow the heap to twice what is live and the kernel kill the
// replica (Gatekeeper's audit OOMs at 512 Mi). GOMEMLIMIT, when set, wins:
// the runtime reads it itself.
func setMemoryLimit(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	b, err := os.ReadFile(cgroupMemoryMax)
	if err != nil {
		return // not in a cgroup v2 container: no limit to heed
	}
	limit, ok := parseMemoryMax(string(b))
	if !ok {
		return
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	log.Info("memory limit from the container", "containerBytes", limit, "goMemLimitBytes", soft)
}

// parseMemoryMax reads memory.max: a byte count, or "max" for none.
func parseMemoryMax(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "max" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
