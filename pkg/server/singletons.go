package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/certs"
	"github.com/bouncer-policy/bouncer/pkg/controller"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// webhookConfigKeeper registers the ValidatingWebhookConfiguration. It runs
// on the leader only, so that replicas of different versions in a rolling
// upgrade never overwrite each other's configuration; it waits until the
// leader itself enforces every policy, and re-applies when the CA bundle
// changes and periodically (an apply of unchanged content writes nothing).
type webhookConfigKeeper struct {
	o       *Options
	applier *objectApplier
	ready   func() bool
	certs   *servingCerts
	log     *slog.Logger
}

func (k *webhookConfigKeeper) NeedLeaderElection() bool { return true }

func (k *webhookConfigKeeper) Start(ctx context.Context) error {
	for !k.ready() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	for {
		obj, err := toUnstructured(k.o.WebhookConfiguration(k.certs.CABundle()))
		if err == nil {
			err = k.applier.Apply(ctx, obj)
		}
		if err != nil && ctx.Err() == nil {
			k.log.Error("applying ValidatingWebhookConfiguration", "name", k.o.WebhookConfigName, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-k.certs.Changed():
		case <-time.After(30 * time.Second):
		}
	}
}

// objectApplier server-side applies with Bouncer's field manager.
type objectApplier struct{ client client.Client }

func (a *objectApplier) Apply(ctx context.Context, obj *unstructured.Unstructured) error {
	obj.SetManagedFields(nil)
	obj.SetResourceVersion("")
	//nolint:staticcheck // client.Apply with unstructured objects is the supported SSA path for them
	return a.client.Patch(ctx, obj, client.Apply, client.FieldOwner(controller.FieldManager), client.ForceOwnership)
}

func (a *objectApplier) Delete(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(namespace)
	u.SetName(name)
	if err := a.client.Delete(ctx, u); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

func toUnstructured(v any) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	return u, u.UnmarshalJSON(b)
}

// servingCerts keeps this replica's serving certificate, issued by the CA
// in the shared Secret, and renews it before it expires.
type servingCerts struct {
	kube  kubernetes.Interface
	o     *Options
	hosts []string
	log   *slog.Logger

	mu      sync.Mutex
	rot     *certs.Rotator
	bundle  []byte
	changed chan struct{}
}

func newServingCerts(ctx context.Context, kube kubernetes.Interface, o Options, hosts []string) (*servingCerts, error) {
	s := &servingCerts{kube: kube, o: &o, hosts: hosts, log: o.Log, changed: make(chan struct{})}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *servingCerts) load(ctx context.Context) error {
	ca, err := LoadOrCreateCA(ctx, s.kube, s.o.Namespace, s.o.CAValidity)
	if err != nil {
		return err
	}
	rot, err := certs.NewRotator(ca, s.hosts, s.o.CertValidity)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rot = rot
	if !bytes.Equal(s.bundle, ca.CertPEM) {
		s.bundle = ca.CertPEM
		close(s.changed)
		s.changed = make(chan struct{})
	}
	return nil
}

func (s *servingCerts) NeedLeaderElection() bool { return false }

func (s *servingCerts) Start(ctx context.Context) error {
	for {
		s.mu.Lock()
		wait := time.Until(s.rot.RenewAt())
		s.mu.Unlock()
		wait = max(wait, time.Second)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		s.mu.Lock()
		err := s.rot.Rotate()
		s.mu.Unlock()
		if err != nil {
			s.log.Error("renewing serving certificate", "err", err)
			continue
		}
		s.log.Info("serving certificate renewed")
	}
}

func (s *servingCerts) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	rot := s.rot
	s.mu.Unlock()
	return rot.GetCertificate(hello)
}

// CABundle is the PEM the webhook configuration trusts.
func (s *servingCerts) CABundle() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bundle
}

// Changed is closed when the bundle changes.
func (s *servingCerts) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// newRecorder records Events through the API (the webhook's denials).
func newRecorder(kube kubernetes.Interface, host string) (recorderAdapter, func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	return recorderAdapter{record: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "bouncer", Host: host})}, b.Shutdown
}

type recorderAdapter struct{ record record.EventRecorder }

func (r recorderAdapter) Eventf(ref *corev1.ObjectReference, eventType, reason, messageFmt string, args ...any) {
	r.record.Eventf(ref, eventType, reason, messageFmt, args...)
}
