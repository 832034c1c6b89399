package certs

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestIssuedCertificateIsTrustedByCA(t *testing.T) {
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Fatal("CA lacks the CA bit or cert-sign usage")
	}
	again, err := ParseCA(ca.CertPEM, ca.KeyPEM)
	if err != nil || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("CA does not round-trip through PEM: %v", err)
	}
	rot, err := NewRotator(again, []string{"127.0.0.1", "bouncer-webhook.bouncer-system.svc"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The webhook serves through GetCertificate only, as here.
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: rot.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }), ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	url := "https://" + lis.Addr().String()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	for _, name := range []string{"", "bouncer-webhook.bouncer-system.svc"} {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: name}}}
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("server name %q: %v", name, err)
		}
		resp.Body.Close()
	}
	// A name not in the certificate is refused.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "evil.example"}}}
	if _, err := client.Get(url); err == nil {
		t.Fatal("certificate accepted for a name it does not hold")
	}
}

func TestRotatorRenewsBeforeExpiry(t *testing.T) {
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rot, err := NewRotator(ca, []string{"127.0.0.1"}, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	first := rot.Current()
	leaf := first.Leaf
	renew := rot.RenewAt()
	if !renew.After(leaf.NotBefore) || !renew.Before(leaf.NotAfter) {
		t.Fatalf("renewal %v is outside the validity %v..%v", renew, leaf.NotBefore, leaf.NotAfter)
	}
	if err := rot.Rotate(); err != nil {
		t.Fatal(err)
	}
	got, _ := rot.GetCertificate(&tls.ClientHelloInfo{})
	if got == first || got.Leaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("Rotate did not replace the served certificate")
	}
	if !got.Leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Fatalf("rotated certificate lost its hosts: %v", got.Leaf.IPAddresses)
	}
}
