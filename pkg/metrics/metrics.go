// Package metrics defines Bouncer's Prometheus metrics in one place, so the
// webhook, controllers and audit report under consistent names and labels.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every collector; create one per process with New.
type Metrics struct {
	Registry *prometheus.Registry
	// Requests counts admission requests by verdict (allow, deny, warn, error)
	// and by the webhook that received them (resources, policies).
	Requests *prometheus.CounterVec
	// Latency observes handler latency by verdict.
	Latency *prometheus.HistogramVec
	// Violations counts violations by enforcement action.
	Violations *prometheus.CounterVec
	// EvalErrors counts evaluation errors and reviews out of time at
	// admission by outcome (admitted, denied, with a _timeout suffix when
	// the review ran out of time), as the failure policy decided.
	EvalErrors *prometheus.CounterVec
	// Constraints and Templates count loaded objects by status (active, error).
	Constraints *prometheus.GaugeVec
	Templates   *prometheus.GaugeVec
	// MutationRequests counts mutating-webhook requests by outcome
	// (mutated, unchanged, exempt, error, error-ignored).
	MutationRequests *prometheus.CounterVec
	// MutationDuration observes the time to mutate one request, by outcome.
	MutationDuration *prometheus.HistogramVec
	// MutatorsApplied counts the objects each mutator changed at admission.
	MutatorsApplied *prometheus.CounterVec
}

// New registers Bouncer's collectors on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_admission_requests_total",
			Help: "Admission requests handled, by webhook and verdict.",
		}, []string{"webhook", "verdict"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bouncer_admission_duration_seconds",
			Help:    "Time to answer an admission request, by verdict.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}, []string{"verdict"}),
		Violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_violations_total",
			Help: "Violations found at admission, by enforcement action.",
		}, []string{"enforcement_action"}),
		EvalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_admission_evaluation_errors_total",
			Help: "Evaluation errors and reviews out of time at admission, by the failure policy's outcome.",
		}, []string{"outcome"}),
		Constraints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bouncer_constraints",
			Help: "Constraints known to this replica, by status.",
		}, []string{"status"}),
		Templates: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bouncer_constraint_templates",
			Help: "ConstraintTemplates known to this replica, by status.",
		}, []string{"status"}),
		MutationRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_mutation_requests_total",
			Help: "Mutating admission requests handled, by outcome.",
		}, []string{"outcome"}),
		MutationDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bouncer_mutation_duration_seconds",
			Help:    "Time to mutate one admission request, by outcome.",
			Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25},
		}, []string{"outcome"}),
		MutatorsApplied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_mutators_applied_total",
			Help: "Objects changed at admission, by mutator.",
		}, []string{"kind", "name"}),
	}
	m.Registry.MustRegister(m.Requests, m.Latency, m.Violations, m.EvalErrors, m.Constraints, m.Templates,
		m.MutationRequests, m.MutationDuration, m.MutatorsApplied,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}
