// Package server wires `bouncer serve`: one controller-runtime manager owns
// the caches, the reconcilers of pkg/controller, the webhook and probe
// servers, certificate rotation and, on the elected leader, the webhook
// configurations (validating, and mutating unless --mutation=false). Every replica serves admission from its own engine.
//
// Shutdown is graceful: on SIGTERM readiness turns false first, the webhook
// keeps answering for a drain period (long enough for the Service's
// endpoints to drop the replica), and only then does the manager stop.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/audit"
	"github.com/bouncer-policy/bouncer/pkg/controller"
	"github.com/bouncer-policy/bouncer/pkg/gitsync"
	"github.com/bouncer-policy/bouncer/pkg/metrics"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"github.com/bouncer-policy/bouncer/pkg/webhook"
	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Options are the flags of bouncer serve.
type Options struct {
	Config *rest.Config
	// Namespace is where Bouncer runs (its Config, CA Secret, Lease; exempt).
	Namespace string
	// PodName identifies this replica in status and in the Lease.
	PodName string
	// Addr is the webhook's TLS listen address, e.g. ":9443".
	Addr string
	// ProbeAddr serves /healthz, /readyz and /metrics over plain HTTP.
	ProbeAddr string
	// DashboardAddr, when set, serves the read-only dashboard of this
	// cluster over HTTPS, every request authenticated (pkg/dashboard).
	DashboardAddr string
	// WebhookURL, when set, registers the webhook by URL (a local control
	// plane); otherwise by Service reference.
	WebhookURL string
	// ServiceName is the webhook's Service in Namespace.
	ServiceName string
	// ExtraHosts are added to the serving certificate.
	ExtraHosts []string
	// FailurePolicy is Ignore or Fail: the resources webhook's failurePolicy
	// and what Bouncer does itself when a policy errors or a review runs
	// out of time.
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
	// CAValidity is the lifetime of a new webhook CA; a successor is added
	// at 80 % of it.
	CAValidity time.Duration
	// CAOverlap is how long a new CA is trusted before it signs, and an old
	// one after it stopped signing.
	CAOverlap time.Duration
	// Operations the resources webhook intercepts.
	Operations []string
	// Engine restricts evaluation to one language (apis.EngineRego or
	// apis.EngineCEL); empty prefers CEL where a template has both.
	Engine string
	// EvalCacheBytes bounds the evaluation cache shared by the webhook and
	// the audit (engine.Options.EvalCacheBytes: 0 sizes it from the memory
	// limit, negative turns it off).
	EvalCacheBytes int64
	// Profiling serves net/http/pprof on ProbeAddr.
	Profiling bool
	// SyncVAP also writes native ValidatingAdmissionPolicies and bindings
	// for templates with CEL code.
	SyncVAP bool
	// SyncMAP also writes a native MutatingAdmissionPolicy and binding per
	// mutator the generator (pkg/mapgen) can express, with the webhook's
	// failure policy and namespace exemptions. It watches the mutators
	// even with Mutation off; with both on, the apiserver and the webhook
	// both apply the expressible mutators (harmless, as mutators are
	// idempotent).
	SyncMAP bool
	// LeaderElect turns on leader election for singleton work; without it
	// this replica does all of it (one replica only).
	LeaderElect bool
	// LeaderElectionID names the Lease; replicas of one installation share
	// it. Default: <WebhookConfigName>-leader.
	LeaderElectionID string
	LeaseDuration    time.Duration
	RenewDeadline    time.Duration
	RetryPeriod      time.Duration
	// ShutdownDrain is how long the webhook keeps serving after SIGTERM
	// with readiness already false.
	ShutdownDrain time.Duration
	// SyncCacheDir holds the git sync's fetch caches, one per PolicySync;
	// empty means a temporary directory.
	SyncCacheDir string
	// SyncApplyWorkers bounds the objects the git sync applies at once;
	// zero means apply.DefaultWorkers.
	SyncApplyWorkers int
	// Mutation serves the mutating webhook (PathMutate) from the mutators
	// in the cluster and registers its MutatingWebhookConfiguration.
	Mutation bool
	// MutationAnnotations writes bouncer.dev/mutations on mutated objects.
	MutationAnnotations bool
	// LogMutations logs each mutation and records an Event on the object.
	LogMutations bool
	// Audit configures the continuous audit (leader only).
	Audit audit.ServeOptions
	Log   *slog.Logger
}

// Defaults fills unset options.
func (o *Options) Defaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.Addr, ":9443")
	def(&o.ProbeAddr, ":8888")
	def(&o.Namespace, "bouncer-system")
	def(&o.ServiceName, "bouncer-webhook")
	def(&o.FailurePolicy, "Ignore")
	def(&o.WebhookConfigName, "bouncer")
	def(&o.PodName, "bouncer-local")
	def(&o.LeaderElectionID, o.WebhookConfigName+"-leader")
	if o.TimeoutSeconds == 0 {
		o.TimeoutSeconds = 3
	}
	if o.CertValidity == 0 {
		o.CertValidity = 7 * 24 * time.Hour
	}
	if o.CAValidity == 0 {
		o.CAValidity = 365 * 24 * time.Hour
	}
	if len(o.Operations) == 0 {
		o.Operations = []string{"CREATE", "UPDATE"}
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 15 * time.Second
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = 10 * time.Second
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

func (o *Options) validate() error {
	if o.FailurePolicy != "Ignore" && o.FailurePolicy != "Fail" {
		return fmt.Errorf("--failure-policy: %q is not Ignore or Fail", o.FailurePolicy)
	}
	if o.TimeoutSeconds < 1 || o.TimeoutSeconds > 30 {
		return fmt.Errorf("--timeout-seconds: %d is outside 1-30 (the apiserver's range)", o.TimeoutSeconds)
	}
	if o.ShutdownDrain < 0 {
		return fmt.Errorf("--shutdown-drain: %s is negative", o.ShutdownDrain)
	}
	if o.LeaderElect && !(o.LeaseDuration > o.RenewDeadline && o.RenewDeadline > o.RetryPeriod) {
		return fmt.Errorf("leader election: want lease duration > renew deadline > retry period, got %s, %s, %s", o.LeaseDuration, o.RenewDeadline, o.RetryPeriod)
	}
	return nil
}

// reviewTimeout bounds one review below the apiserver's timeout, so Bouncer
// answers (per its failure policy) before the apiserver gives up on it.
func (o *Options) reviewTimeout() time.Duration {
	return time.Duration(o.TimeoutSeconds) * time.Second * 8 / 10
}

// Run serves until ctx ends, then drains and stops.
func Run(ctx context.Context, o Options) error {
	o.Defaults()
	if err := o.validate(); err != nil {
		return err
	}
	log := o.Log
	ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
	setMemoryLimit(log)
	kube, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(o.Config)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	if o.InstallCRDs {
		if err := InstallCRDs(ctx, o.Config); err != nil {
			return err
		}
	}
	// The namespace holds the CA Secret and the Lease; on a local control
	// plane nobody else creates it.
	if err := ensureNamespace(ctx, kube, o.Namespace, o.WebhookURL != ""); err != nil {
		return err
	}
	e, err := policyset.NewEngineCaching(o.reviewTimeout(), o.Engine, o.EvalCacheBytes)
	if err != nil {
		return err
	}
	m := metrics.New()

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return err
	}
	gracefulStop := 10 * time.Second
	// The Lease names the replica holding it (kubectl get lease shows who
	// leads); the suffix keeps two processes of one pod name apart.
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.Namespace, o.LeaderElectionID,
		kube.CoreV1(), kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: o.PodName + "_" + string(uuid.NewUUID())[:8]})
	if err != nil {
		return fmt.Errorf("leader election lock: %w", err)
	}
	mgr, err := manager.New(o.Config, manager.Options{
		Scheme: scheme,
		Logger: logr.FromSlogHandler(log.Handler()),
		// Bouncer serves its own probes and metrics (probeServer), so the
		// manager's servers are off.
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Leader election is Bouncer's own (leaderGroup): losing the lease
		// must not end a replica that serves admission.
		LeaderElection:          false,
		GracefulShutdownTimeout: &gracefulStop,
		Cache:                   o.cacheOptions(),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	leaders := &leaderGroup{lock: lock, elect: o.LeaderElect, leaseDuration: o.LeaseDuration,
		renewDeadline: o.RenewDeadline, retryPeriod: o.RetryPeriod, log: log}
	if err := mgr.Add(leaders); err != nil {
		return err
	}
	var mutators *mutation.System
	if o.Mutation || o.SyncMAP {
		mutators = mutation.NewSystem()
	}
	applier := &objectApplier{apply: apply.NewWithClients(dyn, mgr.GetRESTMapper(), apply.FieldManager), client: mgr.GetClient()}
	exempt := append([]string{o.Namespace, "kube-system"}, o.ExemptNamespaces...)
	ctrls, err := controller.Setup(mgr, controller.Options{
		Engine: e, Namespace: o.Namespace, PodID: o.PodName, ExemptNamespaces: exempt,
		Log: log, Metrics: m, SyncVAP: o.SyncVAP, Applier: applier, Mutators: mutators,
		SyncMAP: o.SyncMAP, MAPFailurePolicy: o.FailurePolicy, MAPNamespaceSelector: o.exemptionSelector(),
		MutationWebhookOff: !o.Mutation, MutatingWebhookConfig: o.mutatingWebhookConfig(),
	})
	if err != nil {
		return err
	}
	leaders.Add(ctrls.LeaderTask())

	hosts, err := o.certHosts()
	if err != nil {
		return err
	}
	certSrc, err := startCerts(ctx, kube, o, hosts, leaders)
	if err != nil {
		return err
	}
	if err := mgr.Add(certSrc); err != nil {
		return err
	}
	recorder, stopEvents := newRecorder(kube, o.PodName)
	defer stopEvents()

	// Git sync: the leader syncs; every replica receives pushes and refuses
	// drift.
	syncFront := &gitsync.Frontend{Config: o.Config, Log: log}
	if err := mgr.Add(syncFront); err != nil {
		return err
	}
	leaders.Add(&gitsync.Controller{Config: o.Config, CacheDir: o.SyncCacheDir, ApplyWorkers: o.SyncApplyWorkers, Registry: m.Registry, Log: log})

	var draining atomic.Bool
	h := &webhook.Handler{
		Engine: e, Exempt: ctrls.Exempt, Namespace: ctrls.Namespace, Recorder: recorder, Metrics: m, Log: log,
		Timeout: o.reviewTimeout(), FailurePolicy: o.FailurePolicy, Drift: syncFront.DriftDenial,
		MutationAnnotations: o.MutationAnnotations, LogMutations: o.LogMutations,
		ExpansionMutators: mutators,
	}
	if o.Mutation {
		h.Mutators = mutators // the System alone (for --sync-map) serves no webhook
	}
	if err := mgr.Add(&webhookServer{addr: o.Addr, handler: h, receiver: syncFront, certs: certSrc, log: log, timeout: time.Duration(o.TimeoutSeconds) * time.Second}); err != nil {
		return err
	}
	ready := func() (bool, string) {
		if draining.Load() {
			return false, "shutting down"
		}
		if !ctrls.Ready() {
			return false, fmt.Sprintf("policies not loaded yet: waiting for %v", ctrls.Pending())
		}
		return true, ""
	}
	if err := mgr.Add(&probeServer{addr: o.ProbeAddr, ready: ready, metrics: m, profiling: o.Profiling, log: log}); err != nil {
		return err
	}
	if o.DashboardAddr != "" {
		if err := mgr.Add(&dashboardServer{addr: o.DashboardAddr, exempt: exempt, config: o.Config, kube: kube, certs: certSrc, log: log}); err != nil {
			return err
		}
	}
	if o.Audit.Enabled {
		leaders.Add(&audit.Runnable{Options: o.Audit, Config: o.Config, Engine: e, Namespace: o.Namespace,
			Ready: ctrls.Ready, InventoryGeneration: ctrls.InventoryGeneration, Registry: m.Registry, Recorder: recorder, Log: log})
	}
	if o.ManageWebhookConfig {
		leaders.Add(&webhookConfigKeeper{o: &o, applier: applier, ready: ctrls.Ready, certs: certSrc, log: log,
			mutators: mutators, mapper: mgr.GetRESTMapper()})
	}

	// The manager runs on its own context so that SIGTERM first turns
	// readiness off and drains, and only then stops caches and servers.
	mgrCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go func() {
		select {
		case <-ctx.Done():
		case <-mgrCtx.Done():
			return
		}
		draining.Store(true)
		log.Info("shutting down: readiness off, draining", "drain", o.ShutdownDrain.String())
		select {
		case <-time.After(o.ShutdownDrain):
		case <-mgrCtx.Done():
		}
		stop()
	}()
	log.Info("starting", "pod", o.PodName, "leaderElection", o.LeaderElect, "lease", o.LeaderElectionID, "hosts", hosts)
	err = mgr.Start(mgrCtx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// cacheOptions: informers only for what a controller watches, and the
// MutatingWebhookConfiguration watched by name, as RBAC grants it.
func (o *Options) cacheOptions() cache.Options {
	opts := cache.Options{ReaderFailOnMissingInformer: true}
	if name := o.mutatingWebhookConfig(); name != "" {
		opts.ByObject = map[client.Object]cache.ByObject{
			&admissionregistrationv1.MutatingWebhookConfiguration{}: {Field: fields.OneTermEqualSelector("metadata.name", name)},
		}
	}
	return opts
}

// mutatingWebhookConfig names the MutatingWebhookConfiguration the leader
// keeps, "" when it keeps none.
func (o *Options) mutatingWebhookConfig() string {
	if !o.ManageWebhookConfig || !o.Mutation {
		return ""
	}
	return o.MutatingWebhookConfigName()
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
