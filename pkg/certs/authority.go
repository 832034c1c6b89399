package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Secret data keys. KeyCert and KeyKey are the layout of earlier versions.
const (
	KeyCert    = "ca.crt"
	KeyKey     = "ca.key"
	KeyBundle  = "ca-bundle.crt"
	KeyKeys    = "ca-keys.pem"
	KeyOverlap = "overlap"
)

// renewFraction of a CA's lifetime passes before a successor is added.
const renewFraction = 0.8

// caBackdate is how far a new CA's NotBefore lies before its creation, for
// replicas whose clocks lag.
const caBackdate = time.Hour

// Policy says how long CAs live and overlap.
type Policy struct {
	// CommonName of new CAs; empty means "bouncer-webhook-ca".
	CommonName string
	// Validity of a new CA; zero means one year.
	Validity time.Duration
	// Overlap is how long a new CA is trusted before it signs, and how long
	// an old CA stays trusted after it stopped signing; zero means 7 days.
	Overlap time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.CommonName == "" {
		p.CommonName = "bouncer-webhook-ca"
	}
	if p.Validity == 0 {
		p.Validity = 365 * 24 * time.Hour
	}
	if p.Overlap == 0 {
		p.Overlap = 7 * 24 * time.Hour
	}
	return p
}

// Validate reports a policy under which an old CA would expire before its
// successor has signed every serving certificate.
func (p Policy) Validate() error {
	p = p.withDefaults()
	if p.Validity < 0 || p.Overlap < 0 {
		return fmt.Errorf("CA validity %s and overlap %s must be positive", p.Validity, p.Overlap)
	}
	rest := time.Duration(float64(p.Validity) * (1 - renewFraction))
	if 2*p.Overlap > rest {
		return fmt.Errorf("CA overlap %s is too long for validity %s: twice the overlap must fit in the last %s of a CA's life", p.Overlap, p.Validity, rest)
	}
	return nil
}

// Authority is the set of CAs trusted now, oldest first.
type Authority struct {
	CAs []*CA
	// Overlap as in Policy; it travels in the Secret so every replica picks
	// the same signer.
	Overlap time.Duration
}

// NewAuthority creates an Authority of one fresh CA.
func NewAuthority(p Policy, now time.Time) (*Authority, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	p = p.withDefaults()
	ca, err := newCA(p.CommonName, now, p.Validity)
	if err != nil {
		return nil, err
	}
	return &Authority{CAs: []*CA{ca}, Overlap: p.Overlap}, nil
}

func (a *Authority) overlap() time.Duration {
	if a.Overlap > 0 {
		return a.Overlap
	}
	return Policy{}.withDefaults().Overlap
}

// Bundle returns the PEM of every trusted CA: the webhook's caBundle.
func (a *Authority) Bundle() []byte {
	var b bytes.Buffer
	for _, ca := range a.CAs {
		b.Write(ca.CertPEM)
	}
	return b.Bytes()
}

// Signer returns the CA to sign serving certificates with at now: the newest
// CA that has been trusted for the overlap, or the oldest CA when none has
// (a new Authority's only CA signs at once, since nothing trusts another).
// Expired CAs never sign while another is valid.
func (a *Authority) Signer(now time.Time) *CA {
	if len(a.CAs) == 0 {
		return nil
	}
	var signer *CA
	for _, ca := range a.CAs {
		if now.After(ca.Cert.NotAfter) {
			continue
		}
		if signer == nil || !now.Before(ca.Cert.NotBefore.Add(a.overlap())) {
			signer = ca
		}
	}
	if signer == nil {
		return a.CAs[len(a.CAs)-1]
	}
	return signer
}

// Rotate brings the set up to date at now, for the leader: it adds a CA
// once the newest has passed 80% of its lifetime (or none is valid), and
// drops CAs that have expired or that a newer CA replaced as signer at
// least an overlap ago. It reports whether anything changed.
func (a *Authority) Rotate(p Policy, now time.Time) (bool, error) {
	if err := p.Validate(); err != nil {
		return false, err
	}
	p = p.withDefaults()
	changed := false
	if a.Overlap != p.Overlap {
		a.Overlap, changed = p.Overlap, true
	}
	if n := len(a.CAs); n == 0 || !now.Before(p.renewAt(a.CAs[n-1])) {
		ca, err := newCA(p.CommonName, now, p.Validity)
		if err != nil {
			return false, err
		}
		a.CAs = append(a.CAs, ca)
		changed = true
	}
	kept := a.CAs[:0:0]
	for i, ca := range a.CAs {
		if now.After(ca.Cert.NotAfter) || a.replaced(i, now) {
			changed = true
			continue
		}
		kept = append(kept, ca)
	}
	a.CAs = kept
	return changed, nil
}

// replaced reports whether a CA newer than CAs[i] began signing at least an
// overlap before now.
func (a *Authority) replaced(i int, now time.Time) bool {
	for _, newer := range a.CAs[i+1:] {
		if !now.Before(newer.Cert.NotBefore.Add(2 * a.overlap())) {
			return true
		}
	}
	return false
}

func renewAt(ca *CA) time.Time {
	life := ca.Cert.NotAfter.Sub(ca.Cert.NotBefore)
	return ca.Cert.NotBefore.Add(time.Duration(float64(life) * renewFraction))
}

// renewAt is when the policy wants a successor for ca: at 80% of its life,
// or of the policy's validity if that is shorter, so a CA made under a
// longer validity (the ten-year CA of earlier versions) is replaced on the
// policy's schedule.
func (p Policy) renewAt(ca *CA) time.Time {
	t := renewAt(ca)
	if byPolicy := ca.Cert.NotBefore.Add(time.Duration(float64(p.Validity) * renewFraction)); byPolicy.Before(t) {
		return byPolicy
	}
	return t
}

// NextRotation is when Rotate under p next has work: the earlier of
// NextChange and the policy's renewal of the newest CA.
func (a *Authority) NextRotation(p Policy, now time.Time) time.Time {
	p = p.withDefaults()
	next := a.NextChange(now)
	if n := len(a.CAs); n > 0 {
		if t := p.renewAt(a.CAs[n-1]); t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

// NextChange is the first moment after now at which Signer or Rotate would
// give a different answer: when to look again.
func (a *Authority) NextChange(now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for i, ca := range a.CAs {
		// Only a successor switches the signer and retires its elders.
		if i > 0 {
			consider(ca.Cert.NotBefore.Add(a.overlap()))
			consider(ca.Cert.NotBefore.Add(2 * a.overlap()))
		}
		consider(ca.Cert.NotAfter.Add(time.Second))
	}
	if n := len(a.CAs); n > 0 {
		consider(renewAt(a.CAs[n-1]))
	}
	return next
}

// Encode returns the Secret data for the Authority at now.
func (a *Authority) Encode(now time.Time) map[string][]byte {
	data := map[string][]byte{KeyBundle: a.Bundle(), KeyOverlap: []byte(a.overlap().String())}
	var keys bytes.Buffer
	for _, ca := range a.CAs {
		keys.Write(ca.KeyPEM)
	}
	data[KeyKeys] = keys.Bytes()
	if s := a.Signer(now); s != nil {
		data[KeyCert], data[KeyKey] = s.CertPEM, s.KeyPEM
	}
	return data
}

// DecodeAuthority reads Secret data written by Encode or by an earlier
// version (ca.crt and ca.key only).
func DecodeAuthority(data map[string][]byte) (*Authority, error) {
	a := &Authority{}
	if v, ok := data[KeyOverlap]; ok {
		d, err := time.ParseDuration(string(v))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("key %q: %q is not a positive duration", KeyOverlap, v)
		}
		a.Overlap = d
	}
	if _, ok := data[KeyBundle]; !ok {
		if len(data[KeyCert]) == 0 && len(data[KeyKey]) == 0 {
			return nil, fmt.Errorf("neither %q nor %q and %q present", KeyBundle, KeyCert, KeyKey)
		}
		ca, err := ParseCA(data[KeyCert], data[KeyKey])
		if err != nil {
			return nil, fmt.Errorf("keys %q and %q: %w", KeyCert, KeyKey, err)
		}
		a.CAs = []*CA{ca}
		return a, nil
	}
	certs, err := pemBlocks(data[KeyBundle], "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", KeyBundle, err)
	}
	keys, err := pemBlocks(data[KeyKeys], "EC PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", KeyKeys, err)
	}
	parsed := make([]*ecdsa.PrivateKey, 0, len(keys))
	for i, k := range keys {
		key, err := x509.ParseECPrivateKey(k.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key %q, key %d: %w", KeyKeys, i+1, err)
		}
		parsed = append(parsed, key)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("key %q holds no certificate", KeyBundle)
	}
	for i, c := range certs {
		cert, err := x509.ParseCertificate(c.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key %q, certificate %d: %w", KeyBundle, i+1, err)
		}
		// Keys are matched by public key, not position, so a hand-edited
		// Secret with keys in another order still reads.
		var key *ecdsa.PrivateKey
		for _, k := range parsed {
			if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); ok && pub.Equal(&k.PublicKey) {
				key = k
			}
		}
		if key == nil {
			return nil, fmt.Errorf("key %q has no key for certificate %d (%q) of %q", KeyKeys, i+1, cert.Subject.CommonName, KeyBundle)
		}
		ca, err := caFrom(c.Bytes, key)
		if err != nil {
			return nil, fmt.Errorf("key %q, certificate %d: %w", KeyBundle, i+1, err)
		}
		a.CAs = append(a.CAs, ca)
	}
	sort.SliceStable(a.CAs, func(i, j int) bool { return a.CAs[i].Cert.NotBefore.Before(a.CAs[j].Cert.NotBefore) })
	return a, nil
}

func pemBlocks(b []byte, typ string) ([]*pem.Block, error) {
	var out []*pem.Block
	for len(bytes.TrimSpace(b)) > 0 {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("not PEM")
		}
		if blk.Type != typ {
			return nil, fmt.Errorf("PEM block %q, want %q", blk.Type, typ)
		}
		out = append(out, blk)
	}
	return out, nil
}
