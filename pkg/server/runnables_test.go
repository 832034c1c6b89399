package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/certs"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"github.com/bouncer-policy/bouncer/pkg/webhook"
)

type staticCert struct{ c *tls.Certificate }

func (s staticCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.c, nil }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Clients that send their request slowly are cut off: a webhook server
// holding 50 trickling connections open (as one with only a header timeout
// did, for minutes) can be starved by anyone who reaches its port.
func TestWebhookServerClosesSlowClients(t *testing.T) {
	ca, err := certs.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e, err := policyset.NewEngine(0, "")
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &webhookServer{addr: addr, handler: &webhook.Handler{Engine: e}, certs: staticCert{cert}, log: log, timeout: time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	defer func() { cancel(); <-done }()
	var conn *tls.Conn
	for range 50 {
		if conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()

	const clients = 50
	var wg sync.WaitGroup
	closed := make(chan string, clients)
	for i := range clients {
		wg.Go(func() {
			c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				closed <- fmt.Sprintf("client %d: dial: %v", i, err)
				return
			}
			defer c.Close()
			header := "POST " + webhook.PathResources + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
			if _, err := c.Write([]byte(header)); err != nil {
				closed <- ""
				return
			}
			// One byte a second, for far longer than any timeout.
			for range 60 {
				if _, err := c.Write([]byte("{")); err != nil {
					closed <- ""
					return
				}
				buf := make([]byte, 1)
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := c.Read(buf); err == nil || !isTimeout(err) {
					closed <- "" // the server answered or hung up
					return
				}
			}
			closed <- fmt.Sprintf("client %d: still connected after 60s", i)
		})
	}
	wg.Wait()
	close(closed)
	for msg := range closed {
		if msg != "" {
			t.Error(msg)
		}
	}
	// The server still serves normal requests.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Post("https://"+addr+webhook.PathResources, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a malformed review after the slow clients: status %d, want 400", resp.StatusCode)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
