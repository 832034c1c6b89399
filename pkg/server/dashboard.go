package server

import (
	"context"
	"crypto/tls"
	"log/slog"

	"github.com/bouncer-policy/bouncer/pkg/dashboard"
	"github.com/bouncer-policy/bouncer/pkg/fleet"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// DashboardCluster is the name the dashboard of bouncer serve shows for
// its own cluster.
const DashboardCluster = "in-cluster"

// dashboardServer serves the read-only dashboard of this cluster over
// HTTPS with the webhook's serving certificate, every request checked
// with a TokenReview and a SubjectAccessReview: inside a cluster it is
// never open.
type dashboardServer struct {
	addr string
	// exempt are the namespaces serve never reviews (its own, kube-system,
	// --exempt-namespaces), for the coverage the pages compute.
	exempt []string
	config *rest.Config
	kube   kubernetes.Interface
	certs  certSource
	log    *slog.Logger
}

func (d *dashboardServer) NeedLeaderElection() bool { return false }

func (d *dashboardServer) Start(ctx context.Context) error {
	src := &dashboard.FleetSource{Targets: []fleet.Target{{Name: DashboardCluster, Config: d.config}}, Exempt: d.exempt}
	h, err := dashboard.New(dashboard.Options{Source: src, Log: d.log})
	if err != nil {
		return err
	}
	lis, err := dashboard.Listen(d.addr, true)
	if err != nil {
		return err
	}
	auth := &dashboard.Auth{Client: d.kube, Log: d.log}
	return dashboard.Serve(ctx, lis, auth.Wrap(h), &tls.Config{GetCertificate: d.certs.GetCertificate, MinVersion: tls.VersionTLS12}, d.log)
}
