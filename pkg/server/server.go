// Package server wires `bouncer serve`: it installs Bouncer's CRDs, runs the
// controllers that feed the engine, serves the admission webhooks over TLS
// with a CA of its own, keeps its ValidatingWebhookConfiguration in step,
// and exposes health, readiness and Prometheus metrics.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/certs"
	"github.com/bouncer-policy/bouncer/pkg/controller"
	"github.com/bouncer-policy/bouncer/pkg/metrics"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"github.com/bouncer-policy/bouncer/pkg/webhook"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
)

// Options are the flags of bouncer serve.
type Options struct {
	Config *rest.Config
	// Namespace is where Bouncer runs (its Config, CA Secret, exemption).
	Namespace string
	// PodName identifies this replica in status.
	PodName string
	// Addr is the webhook's TLS listen address, e.g. ":9443".
	Addr string
	// ProbeAddr serves /healthz, /readyz and /metrics over plain HTTP.
	ProbeAddr string
	// WebhookURL, when set, registers the webhook by URL (a local control
	// plane); otherwise by Service reference.
	WebhookURL string
	// ServiceName is the webhook's Service in Namespace.
	ServiceName string
	// ExtraHosts are added to the serving certificate.
	ExtraHosts []string
	// FailurePolicy is Ignore or Fail for the resources webhook.
	FailurePolicy string
	// TimeoutSeconds is the apiserver's timeout for a webhook call.
	TimeoutSeconds int32
	// ExemptNamespaces are never reviewed (besides Namespace and Config's).
	ExemptNamespaces []string
	// WebhookConfigName names the ValidatingWebhookConfiguration.
	WebhookConfigName string
	// ManageWebhookConfig turns on registering the webhook configuration.
	ManageWebhookConfig bool
	// InstallCRDs applies Bouncer's CRDs at start.
	InstallCRDs bool
	// CertValidity is the lifetime of serving certificates.
	CertValidity time.Duration
	// Operations the resources webhook intercepts.
	Operations []string
	// Engine restricts evaluation to one language (apis.EngineRego or
	// apis.EngineCEL); empty prefers CEL where a template has both.
	Engine string
	// Profiling serves net/http/pprof on ProbeAddr.
	Profiling bool
	// SyncVAP also writes native ValidatingAdmissionPolicies and bindings
	// for templates with CEL code.
	SyncVAP bool
	Log     *slog.Logger
}

// Defaults fills unset options.
func (o *Options) Defaults() {
	if o.Addr == "" {
		o.Addr = ":9443"
	}
	if o.ProbeAddr == "" {
		o.ProbeAddr = ":8888"
	}
	if o.Namespace == "" {
		o.Namespace = "bouncer-system"
	}
	if o.ServiceName == "" {
		o.ServiceName = "bouncer-webhook"
	}
	if o.FailurePolicy == "" {
		o.FailurePolicy = "Ignore"
	}
	if o.TimeoutSeconds == 0 {
		o.TimeoutSeconds = 3
	}
	if o.WebhookConfigName == "" {
		o.WebhookConfigName = "bouncer"
	}
	if o.CertValidity == 0 {
		o.CertValidity = 7 * 24 * time.Hour
	}
	if len(o.Operations) == 0 {
		o.Operations = []string{"CREATE", "UPDATE"}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.PodName == "" {
		o.PodName = "bouncer-local"
	}
}

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	o.Defaults()
	if o.FailurePolicy != "Ignore" && o.FailurePolicy != "Fail" {
		return fmt.Errorf("--failure-policy: %q is not Ignore or Fail", o.FailurePolicy)
	}
	log := o.Log
	if o.InstallCRDs {
		if err := InstallCRDs(ctx, o.Config); err != nil {
			return err
		}
	}
	e, err := policyset.NewEngine(time.Duration(o.TimeoutSeconds)*time.Second*8/10, o.Engine)
	if err != nil {
		return err
	}
	m := metrics.New()
	exempt := append([]string{o.Namespace, "kube-system"}, o.ExemptNamespaces...)
	mgr, err := controller.New(controller.Options{
		Config: o.Config, Engine: e, Namespace: o.Namespace, PodID: o.PodName,
		ExemptNamespaces: exempt, Log: log, Metrics: m, SyncVAP: o.SyncVAP,
	})
	if err != nil {
		return err
	}

	hosts, err := o.certHosts()
	if err != nil {
		return err
	}
	ca, err := LoadOrCreateCA(ctx, mgr.Kube(), o.Namespace, o.WebhookURL != "")
	if err != nil {
		return err
	}
	rot, err := certs.NewRotator(ca, hosts, o.CertValidity)
	if err != nil {
		return err
	}

	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: mgr.Kube().CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := recorderAdapter{record: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "bouncer", Host: o.PodName})}

	h := &webhook.Handler{
		Engine: e, Exempt: mgr.Exempt, Namespace: mgr.Namespace, Recorder: recorder, Metrics: m, Log: log,
		Timeout: time.Duration(o.TimeoutSeconds) * time.Second * 8 / 10,
	}
	mux := http.NewServeMux()
	h.Routes(mux)
	whSrv := &http.Server{
		Addr:              o.Addr,
		Handler:           mux,
		TLSConfig:         &tls.Config{GetCertificate: rot.GetCertificate, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	probes := http.NewServeMux()
	probes.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	probes.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !mgr.Ready() {
			http.Error(w, "policies not loaded yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	probes.Handle("/metrics", m.Handler())
	if o.Profiling {
		probes.HandleFunc("/debug/pprof/", pprof.Index)
		probes.HandleFunc("/debug/pprof/profile", pprof.Profile)
		probes.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		probes.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	probeSrv := &http.Server{Addr: o.ProbeAddr, Handler: probes, ReadHeaderTimeout: 10 * time.Second}

	if err := mgr.Start(ctx); err != nil {
		return err
	}
	errc := make(chan error, 3)
	lis, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("webhook listener: %w", err)
	}
	go func() { errc <- serveTLS(whSrv, lis) }()
	plis, err := net.Listen("tcp", o.ProbeAddr)
	if err != nil {
		return fmt.Errorf("probe listener: %w", err)
	}
	go func() { errc <- ignoreClosed(probeSrv.Serve(plis)) }()
	log.Info("serving", "webhook", lis.Addr().String(), "probes", plis.Addr().String(), "hosts", hosts)

	go rotate(ctx, rot, log)
	if o.ManageWebhookConfig {
		go o.keepWebhookConfig(ctx, mgr, ca.CertPEM, log)
	}

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = whSrv.Shutdown(shutdown)
	_ = probeSrv.Shutdown(shutdown)
	return err
}

func serveTLS(s *http.Server, l net.Listener) error {
	return ignoreClosed(s.Serve(tls.NewListener(l, s.TLSConfig)))
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (o *Options) certHosts() ([]string, error) {
	var hosts []string
	if o.WebhookURL != "" {
		u, err := url.Parse(o.WebhookURL)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return nil, fmt.Errorf("--webhook-url %q: want https://HOST:PORT", o.WebhookURL)
		}
		hosts = append(hosts, u.Hostname())
	} else {
		svc, ns := o.ServiceName, o.Namespace
		hosts = append(hosts, svc+"."+ns+".svc", svc+"."+ns+".svc.cluster.local", svc+"."+ns, svc)
	}
	return append(hosts, o.ExtraHosts...), nil
}

// rotate renews the serving certificate before it expires.
func rotate(ctx context.Context, r *certs.Rotator, log *slog.Logger) {
	for {
		wait := time.Until(r.RenewAt())
		if wait < time.Second {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := r.Rotate(); err != nil {
			log.Error("rotating serving certificate", "err", err)
			continue
		}
		log.Info("serving certificate rotated", "notAfter", r.Current().Leaf.NotAfter)
	}
}

type recorderAdapter struct{ record record.EventRecorder }

func (r recorderAdapter) Eventf(ref *corev1.ObjectReference, eventType, reason, messageFmt string, args ...any) {
	r.record.Eventf(ref, eventType, reason, messageFmt, args...)
}
