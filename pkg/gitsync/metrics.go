package gitsync

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the git sync, labelled by PolicySync (namespace/name).
type Metrics struct {
	// Duration observes one pass, by outcome (synced, invalid, error).
	Duration *prometheus.HistogramVec
	// LastSynced is the Unix time of the last pass that applied a commit.
	LastSynced *prometheus.GaugeVec
	// Errors counts errors by code (source, render, template, apply, ...).
	Errors *prometheus.CounterVec
}

// NewMetrics registers the collectors on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bouncer_gitsync_duration_seconds",
			Help:    "Time of one git sync pass (fetch, validate, apply, prune), by PolicySync and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}, []string{"policysync", "outcome"}),
		LastSynced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bouncer_gitsync_last_synced_timestamp_seconds",
			Help: "Unix time of the last pass that left the PolicySync's commit applied.",
		}, []string{"policysync"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_gitsync_errors_total",
			Help: "Git sync errors, by PolicySync and code.",
		}, []string{"policysync", "code"}),
	}
	for _, c := range []prometheus.Collector{m.Duration, m.LastSynced, m.Errors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
