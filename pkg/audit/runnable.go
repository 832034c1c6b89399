package audit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/deploy/reports"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/watchjson"
	"github.com/prometheus/client_golang/prometheus"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// ServeOptions are the audit flags of bouncer serve.
type ServeOptions struct {
	Enabled bool
	// Interval between full passes (default DefaultInterval).
	Interval time.Duration
	// ChunkSize is the page size of listings (default DefaultChunkSize).
	ChunkSize int64
	// ViolationsLimit caps status.violations (default 20).
	ViolationsLimit int
	// ReportFormat is auto (whatever report CRDs the cluster serves),
	// policyreport, openreports, both or none.
	ReportFormat string
	// InstallReportCRDs applies the report CRDs of the chosen formats (both
	// for auto) before the first pass.
	InstallReportCRDs bool
	// Events records a Warning Event on each object for each new violation.
	Events bool
}

// ReportFormats lists the accepted --audit-report-format values.
var ReportFormats = []string{"auto", FormatPolicyReport, FormatOpenReports, "both", "none"}

// Runnable is the continuous audit as a controller-runtime runnable that
// runs on the elected leader only.
type Runnable struct {
	Options   ServeOptions
	Config    *rest.Config
	Engine    *engine.Engine
	Namespace string // Bouncer's namespace (the Config)
	// Ready reports whether the engine holds every policy present at start;
	// the audit waits for it so its first pass does not report less than
	// there is.
	Ready func() bool
	// InventoryGeneration changes when the kinds synced into data.inventory
	// change (see Loop).
	InventoryGeneration func() uint64
	Registry            prometheus.Registerer
	Recorder            EventRecorder
	Log                 *slog.Logger

	// metrics outlive one term as leader: a replica that leads again
	// reuses the collectors it registered.
	metricsOnce sync.Once
	metrics     *Metrics
	metricsErr  error
}

// NeedLeaderElection makes the audit singleton work.
func (r *Runnable) NeedLeaderElection() bool { return true }

// Start runs the audit until ctx ends (leadership ends); it may be
// started again when the replica leads again, and then begins with a full
// pass.
func (r *Runnable) Start(ctx context.Context) error {
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	o := r.Options
	// Listing every kind includes deprecated ones (v1 Endpoints); their
	// warnings say nothing about the audit.
	cfg := rest.CopyConfig(r.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	plain, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("audit: dynamic client: %w", err)
	}
	// The watches follow every create in the cluster: decoding their
	// events once, not five times, was a third of serve's CPU under load.
	dyn, err := watchjson.Wrap(plain, cfg)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(r.Config)
	if err != nil {
		return fmt.Errorf("audit: discovery client: %w", err)
	}
	if r.Registry != nil {
		r.metricsOnce.Do(func() { r.metrics, r.metricsErr = NewMetrics(r.Registry) })
		if r.metricsErr != nil {
			return fmt.Errorf("audit metrics: %w", r.metricsErr)
		}
	}
	m := r.metrics
	if o.InstallReportCRDs {
		if err := InstallReportCRDs(ctx, r.Config, o.ReportFormat); err != nil {
			return err
		}
	}
	for r.Ready != nil && !r.Ready() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	fmts, err := ChooseFormats(o.ReportFormat, disc)
	if err != nil {
		return err
	}
	a := New(Options{Engine: r.Engine, Dynamic: dyn, Discovery: disc, ConfigNamespace: r.Namespace, ChunkSize: o.ChunkSize, Log: log, Metrics: m})
	if o.Events && r.Recorder != nil {
		RecordEvents(a, r.Recorder)
	}
	w := &Writer{A: a, Dynamic: dyn, Formats: fmts, ViolationsLimit: o.ViolationsLimit, Log: log}
	log.Info("audit starting", "interval", o.Interval.String(), "chunkSize", a.o.ChunkSize, "reports", fmts)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(wctx) }()
	l := &Loop{A: a, Interval: o.Interval, PassDone: w.PassDone, InventoryGeneration: r.InventoryGeneration}
	err = l.Run(ctx)
	stop()
	<-done
	return err
}

// ChooseFormats resolves a --audit-report-format value: auto writes every
// format whose CRDs the cluster serves.
func ChooseFormats(v string, disc discovery.DiscoveryInterface) ([]string, error) {
	switch v {
	case "", "auto":
		var out []string
		for _, f := range []string{FormatPolicyReport, FormatOpenReports} {
			rk := formats[f]
			if _, err := disc.ServerResourcesForGroupVersion(rk.Group + "/" + rk.Version); err == nil {
				out = append(out, f)
			}
		}
		return out, nil
	case FormatPolicyReport, FormatOpenReports:
		return []string{v}, nil
	case "both":
		return []string{FormatPolicyReport, FormatOpenReports}, nil
	case "none":
		return nil, nil
	}
	return nil, fmt.Errorf("--audit-report-format: %q is not one of %v", v, ReportFormats)
}

// InstallReportCRDs server-side applies the report CRDs of a format value
// (auto and both install both).
func InstallReportCRDs(ctx context.Context, cfg *rest.Config, format string) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	files := reports.Files
	switch format {
	case FormatPolicyReport:
		files = []string{"wgpolicyk8s.yaml"}
	case FormatOpenReports:
		files = []string{"openreports.yaml"}
	case "none":
		files = nil
	}
	force := true
	for _, f := range files {
		raw, err := reports.FS.ReadFile(f)
		if err != nil {
			return err
		}
		for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
			var meta struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				return fmt.Errorf("report CRD %s: %w", f, err)
			}
			body, err := yaml.YAMLToJSON(doc)
			if err != nil {
				return fmt.Errorf("report CRD %s: %w", f, err)
			}
			if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Patch(ctx, meta.Metadata.Name, types.ApplyPatchType, body,
				metav1.PatchOptions{FieldManager: FieldManager, Force: &force}); err != nil {
				return fmt.Errorf("applying report CRD %s: %w", meta.Metadata.Name, err)
			}
		}
	}
	// The new kinds must be served before the writer looks for them.
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	for _, f := range []string{FormatPolicyReport, FormatOpenReports} {
		if format != "auto" && format != "both" && format != f {
			continue
		}
		rk := formats[f]
		gv := schema.GroupVersion{Group: rk.Group, Version: rk.Version}.String()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := disc.ServerResourcesForGroupVersion(gv); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("report CRDs of %s not served after 30s", gv)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}
