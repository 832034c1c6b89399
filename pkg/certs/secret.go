package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// SecretRef names the Secret holding the Authority.
type SecretRef struct {
	Namespace, Name string
}

func (r SecretRef) String() string { return r.Namespace + "/" + r.Name }

// Keeper creates the CA Secret when it is missing and rotates it on
// schedule. Run it on the leader only: two keepers would each add a CA, and
// although the resourceVersion precondition keeps one of them from writing,
// only one of them needs to work.
type Keeper struct {
	Client kubernetes.Interface
	Secret SecretRef
	Policy Policy
	// Resync bounds the time between two looks at the Secret, so a deleted
	// or hand-edited Secret is repaired; zero means 10 minutes.
	Resync time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// NeedLeaderElection is true: only the leader writes the Secret.
func (k *Keeper) NeedLeaderElection() bool { return true }

// Start keeps the Secret until ctx ends. A failed pass is logged and
// retried; only an invalid Policy stops it.
func (k *Keeper) Start(ctx context.Context) error {
	if err := k.Policy.Validate(); err != nil {
		return err
	}
	resync := k.Resync
	if resync == 0 {
		resync = 10 * time.Minute
	}
	run(ctx, resync, 10*time.Second, k.now, k.Reconcile, func(err error) {
		k.log().Error("keeping the webhook CA secret", "secret", k.Secret.String(), "err", err)
	})
	return nil
}

// run calls pass until ctx ends: again when the time pass returns comes,
// after at most every, and after retry when pass fails.
func run(ctx context.Context, every, retry time.Duration, now func() time.Time, pass func(context.Context) (time.Time, error), logErr func(error)) {
	for {
		wait := every
		next, err := pass(ctx)
		if err != nil {
			logErr(err)
			wait = min(wait, retry)
		} else if d := next.Sub(now()); !next.IsZero() && d < wait {
			wait = max(d, time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Reconcile makes one pass: create the Secret or rotate its Authority, and
// write it back if anything changed. A write lost to a concurrent writer
// (conflict or already exists) is retried from a fresh read. It returns
// when the Authority next needs a look.
func (k *Keeper) Reconcile(ctx context.Context) (time.Time, error) {
	secrets := k.Client.CoreV1().Secrets(k.Secret.Namespace)
	for attempt := 0; ; attempt++ {
		now := k.now()
		s, err := secrets.Get(ctx, k.Secret.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			a, err := NewAuthority(k.Policy, now)
			if err != nil {
				return time.Time{}, err
			}
			_, err = secrets.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: k.Secret.Name, Namespace: k.Secret.Namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "bouncer"}},
				Type:       corev1.SecretTypeOpaque,
				Data:       a.Encode(now),
			}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) && attempt < 3 {
				continue
			}
			if err != nil {
				return time.Time{}, fmt.Errorf("creating CA secret %s: %w", k.Secret, err)
			}
			k.log().Info("created webhook CA", "secret", k.Secret.String(), "notAfter", a.CAs[0].Cert.NotAfter)
			return a.NextRotation(k.Policy, now), nil
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("reading CA secret %s: %w", k.Secret, err)
		}
		a, err := DecodeAuthority(s.Data)
		if err != nil {
			// Never overwrite what cannot be read: the keys may still be the
			// ones every caBundle trusts. A human must look.
			return time.Time{}, fmt.Errorf("CA secret %s: %w", k.Secret, err)
		}
		changed, err := a.Rotate(k.Policy, now)
		if err != nil {
			return time.Time{}, err
		}
		data := a.Encode(now)
		if !changed && sameData(s.Data, data) {
			return a.NextRotation(k.Policy, now), nil
		}
		s = s.DeepCopy()
		s.Data = data
		// Update carries the resourceVersion read above: a concurrent write
		// makes it fail with a conflict instead of being lost.
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) && attempt < 3 {
			continue
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("updating CA secret %s: %w", k.Secret, err)
		}
		k.log().Info("rotated webhook CA", "secret", k.Secret.String(), "cas", len(a.CAs), "signer", a.Signer(now).Cert.SerialNumber.String())
		return a.NextRotation(k.Policy, now), nil
	}
}

func sameData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

func (k *Keeper) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

func (k *Keeper) log() *slog.Logger {
	if k.Log != nil {
		return k.Log
	}
	return slog.Default()
}

// Source keeps one replica's serving certificate, signed by the current
// signer of the Authority in the Secret, and the caBundle that trusts it.
// Every replica runs one.
type Source struct {
	Client kubernetes.Interface
	Secret SecretRef
	// Hosts are the DNS names and IPs the certificate is valid for.
	Hosts []string
	// Validity of a serving certificate; zero means 7 days. It is renewed
	// after two thirds of it.
	Validity time.Duration
	// Poll is the time between two reads of the Secret; zero means one
	// minute. The Authority's overlap must be much longer.
	Poll time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger

	cert   atomic.Pointer[tls.Certificate]
	bundle atomic.Pointer[[]byte]

	mu      sync.Mutex
	changed chan struct{}
}

// NeedLeaderElection is false: every replica serves.
func (s *Source) NeedLeaderElection() bool { return false }

// Start keeps the certificate until ctx ends. Read errors are logged and
// retried; the certificate served stays the last good one.
func (s *Source) Start(ctx context.Context) error {
	poll := s.Poll
	if poll == 0 {
		poll = time.Minute
	}
	run(ctx, poll, 5*time.Second, s.now, s.Sync, func(err error) {
		s.log().Error("refreshing the serving certificate", "secret", s.Secret.String(), "err", err)
	})
	return nil
}

// Sync reads the Secret once, re-issues the serving certificate when the
// signer changed or renewal is due, and notifies subscribers when the
// caBundle changed. It returns when the next look is due.
func (s *Source) Sync(ctx context.Context) (time.Time, error) {
	sec, err := s.Client.CoreV1().Secrets(s.Secret.Namespace).Get(ctx, s.Secret.Name, metav1.GetOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("reading CA secret %s: %w", s.Secret, err)
	}
	a, err := DecodeAuthority(sec.Data)
	if err != nil {
		return time.Time{}, fmt.Errorf("CA secret %s: %w", s.Secret, err)
	}
	now := s.now()
	signer := a.Signer(now)
	validity := s.Validity
	if validity == 0 {
		validity = 7 * 24 * time.Hour
	}
	cur := s.cert.Load()
	// Every CA has the same subject, so only the signature tells which one
	// signed the certificate served now.
	if cur == nil || !now.Before(certRenewAt(cur.Leaf)) || cur.Leaf.CheckSignatureFrom(signer.Cert) != nil {
		c, err := signer.issue(s.Hosts, now, validity)
		if err != nil {
			return time.Time{}, fmt.Errorf("issuing serving certificate: %w", err)
		}
		s.cert.Store(c)
		cur = c
		s.log().Info("issued serving certificate", "notAfter", c.Leaf.NotAfter, "ca", signer.Cert.SerialNumber.String())
	}
	bundle := a.Bundle()
	if old := s.bundle.Load(); old == nil || !bytes.Equal(*old, bundle) {
		s.bundle.Store(&bundle)
		s.notify()
	}
	next := a.NextChange(now)
	if r := certRenewAt(cur.Leaf); next.IsZero() || r.Before(next) {
		next = r
	}
	return next, nil
}

func certRenewAt(leaf *x509.Certificate) time.Time {
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
}

// GetCertificate implements tls.Config.GetCertificate. It fails until the
// first Sync succeeded.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cert.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no serving certificate yet: CA secret %s not read", s.Secret)
}

// CABundle returns the PEM of every CA trusted now, nil before the first
// Sync.
func (s *Source) CABundle() []byte {
	if b := s.bundle.Load(); b != nil {
		return *b
	}
	return nil
}

// Changed returns a channel that is closed at the next change of the
// caBundle (the first Sync counts), so the webhook configuration can be
// re-applied: read CABundle after it closes, then call Changed again.
func (s *Source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

func (s *Source) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
	}
	s.changed = make(chan struct{})
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Source) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
