package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

var quiet = slog.New(slog.DiscardHandler)

// verifies reports whether a client trusting bundle accepts the chain of a
// serving certificate for host at now.
func verifies(t *testing.T, bundle []byte, chain [][]byte, host string, now time.Time) error {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("bundle holds no certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, CurrentTime: now})
	return err
}

func TestRotationTimeline(t *testing.T) {
	p := Policy{Validity: 100 * day, Overlap: 5 * day}
	a, err := NewAuthority(p, t0)
	if err != nil {
		t.Fatal(err)
	}
	ca1 := a.CAs[0]
	if a.Signer(t0) != ca1 {
		t.Fatal("a new Authority's only CA does not sign")
	}
	if changed, _ := a.Rotate(p, t0.Add(79*day)); changed || len(a.CAs) != 1 {
		t.Fatalf("rotated before 80%% of the CA's life: %d CAs", len(a.CAs))
	}
	oldBundle := a.Bundle()
	host := "bouncer-webhook.bouncer-system.svc"
	oldServing, err := a.Signer(t0.Add(79*day)).issue([]string{host}, t0.Add(79*day), 7*day)
	if err != nil {
		t.Fatal(err)
	}

	// 80%: a second CA is trusted, the first still signs.
	tAdd := t0.Add(81 * day)
	if changed, _ := a.Rotate(p, tAdd); !changed || len(a.CAs) != 2 {
		t.Fatalf("no new CA at 80%% of the first one's life: %d CAs", len(a.CAs))
	}
	ca2 := a.CAs[1]
	if a.Signer(tAdd) != ca1 {
		t.Fatal("signer switched to the new CA before the overlap passed")
	}
	if n := strings.Count(string(a.Bundle()), "BEGIN CERTIFICATE"); n != 2 {
		t.Fatalf("bundle holds %d CAs during the overlap, want 2", n)
	}
	if changed, _ := a.Rotate(p, tAdd.Add(time.Hour)); changed {
		t.Fatal("Rotate changed the set again right after adding a CA")
	}

	// A client that has only the old bundle still trusts what is served
	// during the overlap; one with the new bundle trusts it too.
	during := tAdd.Add(2 * day)
	serving, err := a.Signer(during).issue([]string{host}, during, 7*day)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifies(t, oldBundle, serving.Certificate, host, during); err != nil {
		t.Fatalf("client with the old bundle refuses the certificate served during the overlap: %v", err)
	}
	if err := verifies(t, a.Bundle(), serving.Certificate, host, during); err != nil {
		t.Fatalf("client with the new bundle refuses it: %v", err)
	}

	// After the overlap the new CA signs; the old CA is still trusted, so a
	// replica that has not re-issued yet keeps working.
	tSwitch := ca2.Cert.NotBefore.Add(p.Overlap)
	if a.Signer(tSwitch.Add(-time.Second)) != ca1 || a.Signer(tSwitch) != ca2 {
		t.Fatal("signer does not switch exactly one overlap after the new CA's NotBefore")
	}
	if next := a.NextChange(tAdd); !next.Equal(tSwitch) {
		t.Fatalf("NextChange = %v, want the switch at %v", next, tSwitch)
	}
	newServing, err := a.Signer(tSwitch).issue([]string{host}, tSwitch, 7*day)
	if err != nil {
		t.Fatal(err)
	}
	if err := newServing.Leaf.CheckSignatureFrom(ca2.Cert); err != nil {
		t.Fatalf("serving certificate after the switch not signed by the new CA: %v", err)
	}
	if err := verifies(t, a.Bundle(), oldServing.Certificate, host, tSwitch); err != nil {
		t.Fatalf("a certificate from the old CA is refused right after the switch: %v", err)
	}
	if changed, _ := a.Rotate(p, tSwitch.Add(time.Hour)); changed || len(a.CAs) != 2 {
		t.Fatal("old CA dropped right after the switch")
	}

	// One more overlap later the old CA goes.
	tDrop := ca2.Cert.NotBefore.Add(2 * p.Overlap)
	if changed, _ := a.Rotate(p, tDrop); !changed || len(a.CAs) != 1 || a.CAs[0] != ca2 {
		t.Fatalf("old CA not dropped an overlap after the switch: %d CAs", len(a.CAs))
	}
	if err := verifies(t, a.Bundle(), newServing.Certificate, host, tDrop); err != nil {
		t.Fatal(err)
	}
	if verifies(t, a.Bundle(), oldServing.Certificate, host, tDrop) == nil {
		t.Fatal("bundle without the old CA still trusts its certificate")
	}
}

func TestRotateDropsExpiredAndReplacesIt(t *testing.T) {
	p := Policy{Validity: 100 * day, Overlap: 5 * day}
	a, err := NewAuthority(p, t0)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody rotated for the whole life of the CA (the leader was down).
	late := t0.Add(101 * day)
	if changed, _ := a.Rotate(p, late); !changed || len(a.CAs) != 1 {
		t.Fatalf("want the expired CA replaced by one new CA, have %d", len(a.CAs))
	}
	if !late.Before(a.CAs[0].Cert.NotAfter) || a.Signer(late) != a.CAs[0] {
		t.Fatal("the replacement is not valid or does not sign")
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := (Policy{}).Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	err := Policy{Validity: 10 * day, Overlap: 2 * day}.Validate()
	if err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("overlap longer than the end of a CA's life accepted: %v", err)
	}
}

func TestSecretRoundTrip(t *testing.T) {
	p := Policy{Validity: 100 * day, Overlap: 5 * day}
	a, err := NewAuthority(p, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Rotate(p, t0.Add(81*day)); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(82 * day)
	data := a.Encode(now)
	b, err := DecodeAuthority(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.CAs) != 2 || !b.CAs[0].Cert.Equal(a.CAs[0].Cert) || !b.CAs[1].Cert.Equal(a.CAs[1].Cert) || b.Overlap != p.Overlap {
		t.Fatalf("round trip lost CAs or overlap: %d CAs, overlap %s", len(b.CAs), b.Overlap)
	}
	if !b.CAs[1].Key.Equal(a.CAs[1].Key) {
		t.Fatal("round trip lost the new CA's key")
	}
	// ca.crt/ca.key name the signer, for replicas of earlier versions.
	if !bytes.Equal(data[KeyCert], a.CAs[0].CertPEM) || !bytes.Equal(data[KeyKey], a.CAs[0].KeyPEM) {
		t.Fatal("ca.crt/ca.key are not the current signer")
	}

	// Keys in another order still match their certificates.
	swapped := map[string][]byte{KeyBundle: data[KeyBundle], KeyKeys: append(append([]byte{}, a.CAs[1].KeyPEM...), a.CAs[0].KeyPEM...)}
	c, err := DecodeAuthority(swapped)
	if err != nil || !c.CAs[0].Key.Equal(a.CAs[0].Key) {
		t.Fatalf("keys not matched by public key: %v", err)
	}
}

func TestDecodeEarlierLayout(t *testing.T) {
	// The Secret of earlier versions: one ten-year CA in ca.crt and ca.key.
	ca, err := newCA("bouncer-webhook-ca", t0, 10*365*day)
	if err != nil {
		t.Fatal(err)
	}
	a, err := DecodeAuthority(map[string][]byte{"ca.crt": ca.CertPEM, "ca.key": ca.KeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.CAs) != 1 || !a.CAs[0].Cert.Equal(ca.Cert) || a.Signer(t0) != a.CAs[0] {
		t.Fatal("earlier layout does not read as one signing CA")
	}
	// The first pass records the overlap (so the Secret is rewritten in the
	// new layout) but does not rotate a young CA.
	if changed, _ := a.Rotate(Policy{}, t0.Add(day)); !changed || len(a.CAs) != 1 {
		t.Fatalf("first pass on the earlier layout: want the overlap recorded and 1 CA, have %d", len(a.CAs))
	}
	data := a.Encode(t0.Add(day))
	if !bytes.Equal(data["ca.crt"], ca.CertPEM) || len(data[KeyBundle]) == 0 {
		t.Fatal("re-encoded secret lost the CA or lacks the bundle")
	}
	// The ten-year CA is replaced on the policy's one-year schedule, not
	// after eight years.
	due := a.NextRotation(Policy{}, t0.Add(day))
	if want := ca.Cert.NotBefore.Add(292 * day); !due.Equal(want) {
		t.Fatalf("next rotation %v, want %v (80%% of a year)", due, want)
	}
	if changed, _ := a.Rotate(Policy{}, due); !changed || len(a.CAs) != 2 {
		t.Fatalf("ten-year CA not rotated at 80%% of the policy's validity: %d CAs", len(a.CAs))
	}
	if v := a.CAs[1].Cert.NotAfter.Sub(a.CAs[1].Cert.NotBefore); v != 365*day+caBackdate {
		t.Fatalf("new CA valid for %s, want the policy's year", v)
	}
}

func TestDecodeErrors(t *testing.T) {
	ca, err := NewCA("x", day)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("y", day)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		data map[string][]byte
		want string
	}{
		"empty":          {map[string][]byte{}, "neither"},
		"key mismatch":   {map[string][]byte{KeyCert: ca.CertPEM, KeyKey: other.KeyPEM}, "does not belong"},
		"bundle no key":  {map[string][]byte{KeyBundle: ca.CertPEM, KeyKeys: other.KeyPEM}, "has no key for certificate 1"},
		"bundle garbage": {map[string][]byte{KeyBundle: []byte("garbage"), KeyKeys: ca.KeyPEM}, KeyBundle},
		"bad overlap":    {map[string][]byte{KeyBundle: ca.CertPEM, KeyKeys: ca.KeyPEM, KeyOverlap: []byte("soon")}, KeyOverlap},
		"wrong PEM type": {map[string][]byte{KeyBundle: ca.KeyPEM, KeyKeys: ca.KeyPEM}, "want \"CERTIFICATE\""},
	} {
		_, err := DecodeAuthority(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}

// clock is a settable clock shared by the keeper and sources.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// enforceResourceVersion makes the fake clientset honour the
// resourceVersion precondition of Secret updates, as the apiserver does.
func enforceResourceVersion(cs *fake.Clientset) {
	var rv int
	var mu sync.Mutex
	cs.PrependReactor("*", "secrets", func(action k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		// Create and update actions have the same method set, so the verb
		// tells them apart.
		switch action.GetVerb() {
		case "create":
			s := action.(k8stesting.CreateAction).GetObject().(*corev1.Secret)
			rv++
			s.ResourceVersion = strconv.Itoa(rv)
		case "update":
			act := action.(k8stesting.UpdateAction)
			s := act.GetObject().(*corev1.Secret)
			cur, err := cs.Tracker().Get(act.GetResource(), act.GetNamespace(), s.Name)
			if err != nil {
				return true, nil, err
			}
			if cur.(*corev1.Secret).ResourceVersion != s.ResourceVersion {
				return true, nil, apierrors.NewConflict(act.GetResource().GroupResource(), s.Name, fmt.Errorf("resourceVersion %s is stale", s.ResourceVersion))
			}
			rv++
			s.ResourceVersion = strconv.Itoa(rv)
		}
		return false, nil, nil
	})
}

// fixture is a clientset that honours resourceVersion preconditions, the
// Secret's name, a short policy and a clock at t0.
func fixture() (*fake.Clientset, SecretRef, Policy, *clock) {
	cs := fake.NewClientset()
	enforceResourceVersion(cs)
	return cs, SecretRef{Namespace: "bouncer-system", Name: "bouncer-webhook-ca"}, Policy{Validity: 100 * day, Overlap: 5 * day}, &clock{now: t0}
}

func TestKeeperUpdateIsConflictSafe(t *testing.T) {
	ctx := context.Background()
	cs, ref, p, clk := fixture()
	k := &Keeper{Client: cs, Secret: ref, Policy: p, Now: clk.Now, Log: quiet}
	if _, err := k.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	// Someone else writes the Secret between the keeper's read and write:
	// the keeper's first update must conflict and be retried from the
	// fresh copy, keeping the other writer's change.
	clk.Set(t0.Add(81 * day))
	first := true
	cs.PrependReactor("update", "secrets", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if !first {
			return false, nil, nil
		}
		first = false
		cur, _ := cs.Tracker().Get(action.GetResource(), ref.Namespace, ref.Name)
		s := cur.(*corev1.Secret).DeepCopy()
		s.Labels["touched"] = "yes"
		s.ResourceVersion = "999"
		if err := cs.Tracker().Update(action.GetResource(), s, ref.Namespace); err != nil {
			t.Fatal(err)
		}
		return false, nil, nil
	})
	if _, err := k.Reconcile(ctx); err != nil {
		t.Fatalf("keeper did not recover from a conflict: %v", err)
	}
	s, err := cs.CoreV1().Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Labels["touched"] != "yes" {
		t.Fatal("keeper's write overwrote a concurrent change")
	}
	a, err := DecodeAuthority(s.Data)
	if err != nil || len(a.CAs) != 2 {
		t.Fatalf("rotation not written after the conflict: %v", err)
	}
}

func TestKeeperRefusesUnreadableSecret(t *testing.T) {
	ref := SecretRef{Namespace: "ns", Name: "ca"}
	cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name}, Data: map[string][]byte{"ca.crt": []byte("junk"), "ca.key": []byte("junk")}})
	k := &Keeper{Client: cs, Secret: ref, Log: quiet}
	if _, err := k.Reconcile(context.Background()); err == nil || !strings.Contains(err.Error(), "ns/ca") {
		t.Fatalf("unreadable secret not reported with its name: %v", err)
	}
	s, _ := cs.CoreV1().Secrets(ref.Namespace).Get(context.Background(), ref.Name, metav1.GetOptions{})
	if string(s.Data["ca.crt"]) != "junk" {
		t.Fatal("keeper overwrote a secret it could not read")
	}
}

// Two replicas, one keeper: both serving sources follow the rotation, and a
// client of either replica that holds the bundle from before the rotation
// keeps verifying until the old CA is dropped.
func TestTwoReplicasFollowRotation(t *testing.T) {
	ctx := context.Background()
	cs, ref, p, clk := fixture()
	host := "bouncer-webhook.bouncer-system.svc"
	keeper := &Keeper{Client: cs, Secret: ref, Policy: p, Now: clk.Now, Log: quiet}
	replicas := []*Source{
		{Client: cs, Secret: ref, Hosts: []string{host}, Validity: 2 * day, Now: clk.Now, Log: quiet},
		{Client: cs, Secret: ref, Hosts: []string{host}, Validity: 2 * day, Now: clk.Now, Log: quiet},
	}
	if keeper.NeedLeaderElection() != true || replicas[0].NeedLeaderElection() != false {
		t.Fatal("keeper must run on the leader only, sources everywhere")
	}
	if _, err := replicas[0].GetCertificate(nil); err == nil {
		t.Fatal("a source serves a certificate before reading the secret")
	}
	changed := []<-chan struct{}{replicas[0].Changed(), replicas[1].Changed()}
	// drained reports whether replica i's bundle changed since the last
	// call, as a webhook configuration keeper would see it.
	drained := func(i int) bool {
		select {
		case <-changed[i]:
			changed[i] = replicas[i].Changed()
			return true
		default:
			return false
		}
	}
	step := func(at time.Time) {
		t.Helper()
		clk.Set(at)
		if _, err := keeper.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		for i, r := range replicas {
			if _, err := r.Sync(ctx); err != nil {
				t.Fatalf("replica %d: %v", i, err)
			}
		}
	}
	step(t0)
	for i := range replicas {
		if !drained(i) {
			t.Fatalf("replica %d did not report its first bundle", i)
		}
	}
	oldBundle := replicas[0].CABundle()
	if !bytes.Equal(oldBundle, replicas[1].CABundle()) {
		t.Fatal("replicas disagree on the bundle")
	}
	// Serving certificates renew on their own schedule without a bundle
	// change.
	before, _ := replicas[0].GetCertificate(nil)
	step(t0.Add(day + 12*time.Hour))
	after, _ := replicas[0].GetCertificate(nil)
	if before == after || drained(0) {
		t.Fatal("serving certificate not renewed after two thirds of its life, or bundle change reported without one")
	}

	// The keeper adds a CA; both replicas report the bundle change, still
	// serve from the old CA, and the old bundle still verifies.
	tAdd := t0.Add(81 * day)
	step(tAdd)
	for i, r := range replicas {
		if !drained(i) {
			t.Fatalf("replica %d did not report the new bundle", i)
		}
		if n := strings.Count(string(r.CABundle()), "BEGIN CERTIFICATE"); n != 2 {
			t.Fatalf("replica %d bundle has %d CAs, want 2", i, n)
		}
		c, _ := r.GetCertificate(nil)
		if err := verifies(t, oldBundle, c.Certificate, host, tAdd); err != nil {
			t.Fatalf("replica %d: old bundle refuses the certificate during the overlap: %v", i, err)
		}
	}

	// After the overlap both replicas serve from the new CA, which the
	// bundle they report trusts.
	tSwitch := tAdd.Add(p.Overlap)
	step(tSwitch)
	sec, _ := cs.CoreV1().Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	a, err := DecodeAuthority(sec.Data)
	if err != nil {
		t.Fatal(err)
	}
	newCA := a.CAs[1]
	for i, r := range replicas {
		c, _ := r.GetCertificate(nil)
		if err := c.Leaf.CheckSignatureFrom(newCA.Cert); err != nil {
			t.Fatalf("replica %d still serves from the old CA after the switch", i)
		}
		if err := verifies(t, r.CABundle(), c.Certificate, host, tSwitch); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}

	// One more overlap: the old CA leaves the bundle everywhere.
	step(tSwitch.Add(p.Overlap))
	for i, r := range replicas {
		if !drained(i) {
			t.Fatalf("replica %d did not report the bundle without the old CA", i)
		}
		if n := strings.Count(string(r.CABundle()), "BEGIN CERTIFICATE"); n != 1 {
			t.Fatalf("replica %d bundle has %d CAs after the drop, want 1", i, n)
		}
	}
}

// The Source behind a real TLS listener: a client that trusts CABundle
// connects; Start ends with its context.
func TestSourceServesTLS(t *testing.T) {
	cs := fake.NewClientset()
	ref := SecretRef{Namespace: "ns", Name: "ca"}
	if _, err := (&Keeper{Client: cs, Secret: ref, Log: quiet}).Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	src := &Source{Client: cs, Secret: ref, Hosts: []string{"127.0.0.1"}, Log: quiet}
	changed := src.Changed()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Start(ctx) }()
	<-changed
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: src.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }), ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(src.CABundle())
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + lis.Addr().String())
	if err != nil {
		t.Fatalf("client trusting CABundle: %v", err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
