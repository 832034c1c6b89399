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
	"strings"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/gitsync"
	"github.com/bouncer-policy/bouncer/pkg/metrics"
	"github.com/bouncer-policy/bouncer/pkg/webhook"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// webhookServer serves both admission webhooks over TLS on every replica.
type webhookServer struct {
	addr    string
	handler *webhook.Handler
	// receiver serves the git sync's POST /sync/<namespace>/<name>.
	receiver http.Handler
	certs    certSource
	log      *slog.Logger
	timeout  time.Duration // the apiserver's timeout for one call
}

type certSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

func (s *webhookServer) NeedLeaderElection() bool { return false }

func (s *webhookServer) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	s.handler.Routes(mux)
	if s.receiver != nil {
		mux.Handle(gitsync.ReceiverPrefix, s.receiver)
	}
	// The apiserver sends a whole AdmissionReview at once and gives up
	// after s.timeout; a client that trickles its headers or body is not
	// the apiserver, and must not hold a connection and a goroutine.
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{GetCertificate: s.certs.GetCertificate, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       s.timeout + 5*time.Second,
		WriteTimeout:      2*s.timeout + 5*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("webhook listener: %w", err)
	}
	s.log.Info("serving webhooks", "addr", lis.Addr().String())
	return serveUntil(ctx, srv, tls.NewListener(lis, srv.TLSConfig))
}

// probeServer serves /healthz, /readyz, /metrics and, optionally, pprof.
type probeServer struct {
	addr      string
	ready     func() (bool, string)
	metrics   *metrics.Metrics
	profiling bool
	log       *slog.Logger
}

func (p *probeServer) NeedLeaderElection() bool { return false }

func (p *probeServer) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := p.ready(); !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	// controller-runtime's registry carries the workqueue, reconcile and
	// leader-election metrics.
	gatherers := prometheus.Gatherers{p.metrics.Registry, withoutRuntime(ctrlmetrics.Registry)}
	mux.Handle("/metrics", promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{}))
	if p.profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	lis, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("probe listener: %w", err)
	}
	p.log.Info("serving probes and metrics", "addr", lis.Addr().String())
	return serveUntil(ctx, srv, lis)
}

// withoutRuntime drops the Go and process families from a registry that
// registers them too, since a family gathered twice fails the scrape.
func withoutRuntime(g prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		out := mfs[:0]
		for _, mf := range mfs {
			if n := mf.GetName(); !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
				out = append(out, mf)
			}
		}
		return out, err
	})
}

// serveUntil serves until ctx ends, then lets requests in flight finish.
func serveUntil(ctx context.Context, srv *http.Server, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdown)
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}
