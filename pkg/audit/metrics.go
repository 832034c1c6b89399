package audit

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the audit's Prometheus collectors.
type Metrics struct {
	Duration       prometheus.Histogram
	Objects        prometheus.Counter
	Violations     *prometheus.GaugeVec
	LastRun        prometheus.Gauge
	EvalErrors     *prometheus.CounterVec
	ListErrors     *prometheus.CounterVec
	Resources      prometheus.Gauge
	LastRunObjects prometheus.Gauge
}

// NewMetrics registers the audit's collectors on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bouncer_audit_duration_seconds",
			Help:    "Duration of full audit passes.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600},
		}),
		Objects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_audit_objects_total",
			Help: "Objects evaluated by the audit, in passes and from watch events.",
		}),
		LastRunObjects: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bouncer_audit_last_run_objects",
			Help: "Objects evaluated in the last full audit pass.",
		}),
		Violations: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bouncer_audit_violations",
			Help: "Current audit violations, by constraint and enforcement action.",
		}, []string{"constraint_kind", "constraint", "enforcement_action"}),
		LastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bouncer_audit_last_run_end_timestamp_seconds",
			Help: "When the last full audit pass ended (Unix time).",
		}),
		EvalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_audit_evaluation_errors_total",
			Help: "Objects a constraint failed to evaluate in the audit, by constraint.",
		}, []string{"constraint_kind", "constraint"}),
		ListErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_audit_list_errors_total",
			Help: "Listings, watches and discoveries the audit could not do, by resource.",
		}, []string{"resource"}),
		Resources: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bouncer_audit_resources",
			Help: "Resources (kinds) the audit lists and watches.",
		}),
	}
	for _, c := range []prometheus.Collector{m.Duration, m.Objects, m.LastRunObjects, m.Violations, m.LastRun, m.EvalErrors, m.ListErrors, m.Resources} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
