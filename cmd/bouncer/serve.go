package main

import (
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/audit"
	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/bouncer-policy/bouncer/pkg/server"
	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
)

func init() { extraCommands = append(extraCommands, newServeCmd) }

func newServeCmd() *cobra.Command {
	var o server.Options
	var kubeconfig, logLevel, logFormat string
	var operations, engineFlag string
	var cacheSize cli.ByteSize
	var cacheOff bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the admission webhook and the policy controllers",
		Long: `Run Bouncer in a cluster: install its CRDs, load ConstraintTemplates,
constraints, ExpansionTemplates, mutators and the Config, serve the
validating and mutating webhooks over TLS with a CA of its own and keep their
webhook configurations in step. Health and readiness (/healthz, /readyz) and
Prometheus metrics (/metrics) are served on --probe-addr. With
--dashboard-addr, the read-only dashboard of this cluster is served over
HTTPS (the webhook's certificate); every request needs a bearer token whose
user may get constrainttemplates.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			serverGC()
			cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
				&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig, Precedence: clientcmd.NewDefaultClientConfigLoadingRules().Precedence},
				&clientcmd.ConfigOverrides{}).ClientConfig()
			if err != nil {
				return err
			}
			cfg.QPS, cfg.Burst = 50, 100
			o.Config = cfg
			o.Log = newLogger(logLevel, logFormat)
			if o.PodName == "" {
				o.PodName = os.Getenv("POD_NAME")
			}
			only, err := cli.EngineFlag(engineFlag)
			if err != nil {
				return err
			}
			o.Engine = only
			o.EvalCacheBytes = int64(cacheSize)
			if cacheOff {
				o.EvalCacheBytes = -1
			}
			if operations != "" {
				o.Operations = strings.Split(operations, ",")
			}
			return server.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: in-cluster or $KUBECONFIG)")
	f.StringVar(&o.Namespace, "namespace", envOr("POD_NAMESPACE", "bouncer-system"), "Bouncer's namespace (Config, CA secret; exempt)")
	f.StringVar(&o.PodName, "pod-name", "", "replica name used in status (default $POD_NAME)")
	f.StringVar(&o.Addr, "addr", ":9443", "webhook TLS listen address")
	f.StringVar(&o.ProbeAddr, "probe-addr", ":8888", "health, readiness and metrics listen address (plain HTTP)")
	f.StringVar(&o.DashboardAddr, "dashboard-addr", "", "serve the dashboard over HTTPS with token authentication on this address, e.g. :8443 (default off)")
	f.StringVar(&o.WebhookURL, "webhook-url", "", "register the webhook by URL (local control planes), e.g. https://127.0.0.1:9443")
	f.StringVar(&o.ServiceName, "service-name", "bouncer-webhook", "the webhook's Service in --namespace")
	f.StringSliceVar(&o.ExtraHosts, "extra-cert-hosts", nil, "extra DNS names or IPs for the serving certificate")
	f.StringVar(&o.FailurePolicy, "failure-policy", "Ignore", "Ignore or Fail: the resources webhook's failurePolicy, and what an evaluation error or a review out of time does (Ignore admits with a warning, Fail denies)")
	f.Int32Var(&o.TimeoutSeconds, "timeout-seconds", 3, "webhook timeout the apiserver applies (1-30)")
	f.StringSliceVar(&o.ExemptNamespaces, "exempt-namespaces", nil, "namespaces never reviewed (prefix*/*suffix globs), besides kube-system and --namespace")
	f.StringVar(&o.WebhookConfigName, "webhook-config-name", "bouncer", "name of the ValidatingWebhookConfiguration")
	f.BoolVar(&o.ManageWebhookConfig, "manage-webhook-config", true, "create and keep the ValidatingWebhookConfiguration")
	f.BoolVar(&o.Mutation, "mutation", true, "serve the mutating webhook from the mutators in the cluster (Assign, AssignMetadata, ModifySet, AssignImage) and keep the MutatingWebhookConfiguration <webhook-config-name>-mutating; false removes it")
	f.BoolVar(&o.MutationAnnotations, "mutation-annotations", false, "write the annotation bouncer.dev/mutations (the mutators that changed it) on mutated objects")
	f.BoolVar(&o.LogMutations, "log-mutations", false, "log every mutation and record an Event on the mutated object")
	f.BoolVar(&o.InstallCRDs, "install-crds", true, "apply Bouncer's CRDs at start")
	f.BoolVar(&o.SyncMAP, "sync-map", false, "also write a native MutatingAdmissionPolicy and binding per mutator that can be expressed as one (see bouncer map generate); with the mutating webhook on too, both mutate: use --mutation=false to move mutation into the apiserver")
	f.BoolVar(&o.SyncVAP, "sync-vap", false, "also write a native ValidatingAdmissionPolicy per CEL template and a binding per constraint")
	f.StringVar(&engineFlag, "engine", "auto", "policy language: auto (CEL where a template has it, as Gatekeeper), rego or cel")
	f.Var(&cacheSize, "eval-cache-size", "memory for the cache of template evaluations shared by the webhook and the audit (default: 64MiB, or an eighth of GOMEMLIMIT when less)")
	f.BoolVar(&cacheOff, "no-eval-cache", false, "evaluate every template on every review (turns the evaluation cache off)")
	f.BoolVar(&o.Profiling, "profiling", false, "serve net/http/pprof on --probe-addr")
	f.StringVar(&operations, "operations", "CREATE,UPDATE", "operations the resources webhook reviews")
	f.BoolVar(&o.LeaderElect, "leader-elect", true, "elect a leader (a Lease in --namespace) for singleton work: constraint CRDs, webhook configuration, native policy sync, Ready conditions")
	f.StringVar(&o.LeaderElectionID, "leader-election-id", "", "name of the Lease replicas of one installation share (default <webhook-config-name>-leader)")
	f.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", 15*time.Second, "how long a lease is valid; a replica killed while leading is replaced after at most this")
	f.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", 10*time.Second, "how long the leader keeps retrying to renew before it steps down")
	f.DurationVar(&o.RetryPeriod, "leader-election-retry-period", 2*time.Second, "how often candidates try to acquire or renew the lease")
	f.DurationVar(&o.ShutdownDrain, "shutdown-drain", 15*time.Second, "on SIGTERM, keep serving this long with readiness off so endpoints drop the replica first")
	f.DurationVar(&o.CAValidity, "ca-validity", 365*24*time.Hour, "lifetime of a new webhook CA; the leader adds its successor at 80% of it")
	f.DurationVar(&o.CAOverlap, "ca-overlap", 7*24*time.Hour, "how long a new CA is in the caBundle before it signs, and an old one after it stopped signing")
	f.BoolVar(&o.Audit.Enabled, "audit", true, "audit what runs (leader only): constraint status, PolicyReports/Reports")
	f.DurationVar(&o.Audit.Interval, "audit-interval", audit.DefaultInterval, "time between full audit passes (watch events keep results current in between)")
	f.Int64Var(&o.Audit.ChunkSize, "audit-chunk-size", audit.DefaultChunkSize, "objects per audit list page")
	f.IntVar(&o.Audit.ViolationsLimit, "constraint-violations-limit", audit.DefaultViolationsLimit, "violations shown in a constraint's status.violations (totalViolations counts all)")
	f.StringVar(&o.Audit.ReportFormat, "audit-report-format", "auto", "report objects written: auto (the formats whose CRDs the cluster serves), policyreport, openreports, both or none")
	f.BoolVar(&o.Audit.InstallReportCRDs, "install-report-crds", false, "apply the report CRDs of --audit-report-format (both for auto) at start")
	f.BoolVar(&o.Audit.Events, "audit-events", false, "record a Warning Event on an object for each audit violation found")
	f.StringVar(&o.SyncCacheDir, "sync-cache-dir", "", "directory of the git sync's fetch caches, one per PolicySync (default a temporary directory)")
	f.IntVar(&o.SyncApplyWorkers, "sync-apply-workers", apply.DefaultWorkers, "objects the git sync applies at once (each after what it depends on)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "json", "json or text")
	return cmd
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func newLogger(level, format string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
