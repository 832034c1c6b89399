package dashboard

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/fleet"
)

// Fleet is what the pages show: every cluster as last read.
type Fleet struct {
	Clusters []fleet.Detail
	ReadAt   time.Time
}

// Source gives the fleet's current state.
type Source interface {
	Snapshot(ctx context.Context) (Fleet, error)
}

// Static is a Source of fixed data (tests, offline views).
type Static Fleet

// Snapshot returns the fixed data.
func (s Static) Snapshot(context.Context) (Fleet, error) { return Fleet(s), nil }

// DefaultMaxAge bounds how often FleetSource reads the clusters: a page
// load costs a few List calls per cluster, and a dashboard left open or
// reloaded by several people must not turn into load on the apiservers.
const DefaultMaxAge = 5 * time.Second

// FleetSource reads its targets through pkg/fleet, at most once per
// MaxAge; concurrent requests share one read.
type FleetSource struct {
	Targets []fleet.Target
	MaxAge  time.Duration
	// Exempt are namespaces admission never reviews besides those a
	// cluster's Config names: bouncer serve passes its own --namespace and
	// --exempt-namespaces, which no object in the cluster records.
	Exempt []string

	mu   sync.Mutex
	last Fleet
	// read and now are fleet.ReadDetails and time.Now, replaced in tests.
	read func(context.Context, []fleet.Target) []fleet.Detail
	now  func() time.Time
}

// Snapshot returns the cached state, or reads the clusters when it is
// older than MaxAge. An unreachable cluster is in the result with its
// Error set; it does not fail the snapshot.
func (s *FleetSource) Snapshot(ctx context.Context) (Fleet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, read, maxAge := time.Now, fleet.ReadDetails, s.MaxAge
	if s.now != nil {
		now = s.now
	}
	if s.read != nil {
		read = s.read
	}
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if !s.last.ReadAt.IsZero() && now().Sub(s.last.ReadAt) < maxAge {
		return s.last, nil
	}
	details := read(ctx, s.Targets)
	for i := range details {
		if details[i].Status.Error == "" && len(s.Exempt) > 0 {
			details[i].Exempt = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(details[i].Exempt), s.Exempt...))))
		}
	}
	if err := ctx.Err(); err != nil {
		// A request given up mid-read leaves every cluster "unreachable";
		// that is not worth keeping for the next visitor.
		return Fleet{}, err
	}
	s.last = Fleet{Clusters: details, ReadAt: now()}
	return s.last, nil
}
