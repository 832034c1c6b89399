package policyset

import (
	"time"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
)

// NewEngine returns an engine with every policy language Bouncer supports,
// so each entry point evaluates the same code the same way.
// only restricts the engine to one language ("" for all).
func NewEngine(reviewTimeout time.Duration, only string) (*engine.Engine, error) {
	return NewEngineCaching(reviewTimeout, only, 0)
}

// NewEngineCaching is NewEngine with the evaluation cache bounded to
// cacheBytes (engine.Options.EvalCacheBytes: 0 is the default size,
// negative turns it off).
func NewEngineCaching(reviewTimeout time.Duration, only string, cacheBytes int64) (*engine.Engine, error) {
	return engine.New(engine.Options{
		Drivers:        []engine.Driver{rego.New(), cel.New()},
		ReviewTimeout:  reviewTimeout,
		OnlyEngine:     only,
		EvalCacheBytes: cacheBytes,
	})
}

// NewEngineSharing is NewEngine with CEL programs taken from and added to
// cache, for many engines loading the same templates.
func NewEngineSharing(reviewTimeout time.Duration, only string, cache *cel.ProgramCache) (*engine.Engine, error) {
	return engine.New(engine.Options{
		Drivers:       []engine.Driver{rego.New(), cel.NewCaching(cache)},
		ReviewTimeout: reviewTimeout,
		OnlyEngine:    only,
	})
}
