package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// leaderGroup runs the singleton runnables while this replica holds the
// Lease, and campaigns again when it loses it. controller-runtime's own
// leader election ends the process on a lost lease; for an admission
// webhook that would turn an apiserver restart longer than the renew
// deadline into an outage of every replica at once. Here a replica that
// loses the lease only stops its singleton work and keeps serving.
type leaderGroup struct {
	lock          resourcelock.Interface
	leaseDuration time.Duration
	renewDeadline time.Duration
	retryPeriod   time.Duration
	// elect false runs the runnables at once (one replica, no Lease).
	elect bool
	log   *slog.Logger

	mu        sync.Mutex
	runnables []manager.Runnable
}

// Add registers a runnable that runs only on the leader; it is started
// with a context that ends when leadership does.
func (g *leaderGroup) Add(r manager.Runnable) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.runnables = append(g.runnables, r)
}

func (g *leaderGroup) NeedLeaderElection() bool { return false }

func (g *leaderGroup) Start(ctx context.Context) error {
	if !g.elect {
		g.lead(ctx)
		return nil
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            g.lock,
			LeaseDuration:   g.leaseDuration,
			RenewDeadline:   g.renewDeadline,
			RetryPeriod:     g.retryPeriod,
			ReleaseOnCancel: true,
			Name:            g.lock.Describe(),
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: g.lead,
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return err
		}
		le.Run(ctx)
		if ctx.Err() == nil {
			g.log.Warn("lost the leader lease; campaigning again", "lease", g.lock.Describe())
			select {
			case <-ctx.Done():
			case <-time.After(g.retryPeriod):
			}
		}
	}
	return nil
}

// lead runs every registered runnable until ctx ends.
func (g *leaderGroup) lead(ctx context.Context) {
	g.log.Info("leading", "lease", g.lock.Describe())
	g.mu.Lock()
	rs := append([]manager.Runnable(nil), g.runnables...)
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() {
			if err := r.Start(ctx); err != nil && ctx.Err() == nil {
				g.log.Error("leader task failed", "err", err)
			}
		})
	}
	wg.Wait()
}
