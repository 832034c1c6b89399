package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// TestConcurrentReviewsAndUpdates runs many reviewers while templates,
// constraints, expansions and the inventory are swapped underneath them.
// Every review must see a consistent snapshot: the stable constraint is
// always there, each result is complete, and nothing errors. Run with -race.
func TestConcurrentReviewsAndUpdates(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sDisallowedTags", imagesRego, tagsSchema))
	mustAddTemplate(t, e, legacyTemplate(t, "K8sAlways", alwaysRego, ""))
	mustAddConstraint(t, e, constraint(t, "K8sDisallowedTags", "stable", "parameters:\n  tags: [latest]"))

	const reviewers = 8
	iterations := 300
	if testing.Short() {
		iterations = 50
	}
	ctx := context.Background()
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, reviewers+1)

	// The writer keeps changing everything but the stable constraint.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !done.Load(); i++ {
			name := fmt.Sprintf("c%d", i%5)
			switch i % 6 {
			case 0:
				if _, err := e.AddConstraint(constraint(t, "K8sAlways", name, "")); err != nil {
					errs <- err
					return
				}
			case 1:
				e.RemoveConstraint("K8sAlways", name)
			case 2:
				// Replace a template: its message changes, its constraints stay.
				src := strings.Replace(alwaysRego, `"always <`, fmt.Sprintf(`"always-v%d <`, i), 1)
				if _, err := e.AddTemplate(legacyTemplate(t, "K8sAlways", src, "")); err != nil {
					errs <- err
					return
				}
			case 3:
				if err := e.AddExpansion(deploymentExpansion(t, "")); err != nil {
					errs <- err
					return
				}
			case 4:
				e.RemoveExpansion("expand-deployments")
			case 5:
				if err := e.PutInventory(ctx, pod("shop", name, nil, "nginx")); err != nil {
					errs <- err
					return
				}
			}
		}
	}()

	var reviewed atomic.Int64
	var rwg sync.WaitGroup
	for w := 0; w < reviewers; w++ {
		rwg.Add(1)
		go func(w int) {
			defer rwg.Done()
			for i := 0; i < iterations; i++ {
				o := pod("shop", fmt.Sprintf("p%d-%d", w, i), nil, "nginx:latest")
				if i%3 == 0 {
					o = deployment(t, "shop", "web", "nginx:latest")
				}
				resp, err := e.Review(ctx, engine.ObjectReview(o, "CREATE", nil))
				if err != nil {
					errs <- err
					return
				}
				if len(resp.Errors) > 0 {
					errs <- fmt.Errorf("review errors: %v", resp.Errors)
					return
				}
				stable := 0
				for _, r := range resp.Results {
					if r.Message == "" || r.EnforcementAction != "deny" {
						errs <- fmt.Errorf("incomplete result %+v", r)
						return
					}
					if r.ConstraintName == "stable" {
						stable++
					}
				}
				// A Pod always violates the stable constraint once; a
				// Deployment does only while the expansion is present.
				if o["kind"] == "Pod" && stable != 1 {
					errs <- fmt.Errorf("pod: stable constraint reported %d times: %v", stable, names(resp.Results))
					return
				}
				reviewed.Add(1)
			}
		}(w)
	}
	rwg.Wait()
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := reviewed.Load(); got != int64(reviewers*iterations) {
		t.Errorf("reviewed %d objects, want %d", got, reviewers*iterations)
	}
}
