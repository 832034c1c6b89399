package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Test hosts of our own: addresses on the host end of a veth pair whose other
// end sits in a network namespace this test creates and removes. EndpointSlices refuse loopback addresses, so replicas behind
// a Service need addresses like these; nothing else is ever contacted.
var replicaIPs = []string{"10.250.7.1", "10.250.7.2"}

const (
	testLink  = "bncr-e2e0"
	testPeer  = "bncr-e2e1"
	testNetNS = "bncr-e2e"
)

func setupTestHosts(t *testing.T) {
	t.Helper()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	cleanup := func() {
		_ = exec.Command("ip", "link", "del", testLink).Run()
		_ = exec.Command("ip", "netns", "del", testNetNS).Run()
	}
	cleanup()
	t.Cleanup(cleanup)
	run("netns", "add", testNetNS)
	run("link", "add", testLink, "type", "veth", "peer", "name", testPeer)
	run("link", "set", testPeer, "netns", testNetNS)
	run("netns", "exec", testNetNS, "ip", "link", "set", testPeer, "up")
	for _, ip := range replicaIPs {
		run("addr", "add", ip+"/32", "dev", testLink)
	}
	run("link", "set", testLink, "up")
}

// TestServiceReferenceReplicas registers the webhook by Service reference,
// as in a real cluster, with two replicas behind one Service. The apiserver
// (started with --enable-aggregator-routing) sends each call to a random
// endpoint; both replicas must serve certificates the single caBundle trusts.
func TestServiceReferenceReplicas(t *testing.T) {
	setupTestHosts(t)
	const ns, sys = "svcref", "bouncer-svc"
	createNamespace(t, ns)
	createNamespace(t, sys)
	ctx := context.Background()
	port := int32(freePort(t))
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "bouncer-webhook", Namespace: sys},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(port)}}},
	}
	if _, err := kube(t).CoreV1().Services(sys).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// As in a cluster, a replica joins the Service's endpoints once ready.
	var replicas []*bouncerProcess
	for i, ip := range replicaIPs {
		r := startReplica(t, fmt.Sprintf("bouncer-svc-%d", i), ip, port, sys)
		replicas = append(replicas, r)
		setEndpoints(t, sys, port, replicaIPs[:i+1])
	}
	mustKubectl(t, readFile(t, "examples/disallowed-tags/template.yaml"), "apply", "-f", "-")
	eventually(t, 30*time.Second, func() error {
		_, err := kubectl(t, readFile(t, "examples/disallowed-tags/constraint.yaml"), "apply", "-f", "-")
		return err
	})
	waitEnforced(t, "K8sDisallowedTags", "no-latest", "bouncer-svc-0")
	waitEnforced(t, "K8sDisallowedTags", "no-latest", "bouncer-svc-1")

	for i := 0; i < 30; i++ {
		_, err := createPod(t, pod(fmt.Sprintf("latest-%d", i), ns, "nginx:latest", nil))
		if err == nil || !strings.Contains(err.Error(), "[no-latest]") {
			t.Fatalf("request %d: want a denial from a replica, got %v", i, err)
		}
	}
	for i, r := range replicas {
		if n := deniedCount(r.metrics(t)); n == 0 {
			t.Errorf("replica %d served no denial; calls are not spread over the Service's endpoints", i)
		}
	}
	mustKubectl(t, "", "delete", "k8sdisallowedtags", "no-latest")
}

func setEndpoints(t *testing.T, namespace string, port int32, ips []string) {
	t.Helper()
	ready := true
	name := "https"
	proto := corev1.ProtocolTCP
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "bouncer-webhook-replicas", Namespace: namespace, Labels: map[string]string{discoveryv1.LabelServiceName: "bouncer-webhook"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	for _, ip := range ips {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	c := kube(t).DiscoveryV1().EndpointSlices(namespace)
	ctx := context.Background()
	if _, err := c.Get(ctx, slice.Name, getOpts); err == nil {
		if _, err := c.Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := c.Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func startReplica(t *testing.T, name, ip string, port int32, namespace string, extra ...string) *bouncerProcess {
	t.Helper()
	probe := freePort(t)
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve",
		"--kubeconfig", cluster.Kubeconfig,
		"--namespace", namespace,
		"--addr", fmt.Sprintf("%s:%d", ip, port),
		"--probe-addr", fmt.Sprintf("127.0.0.1:%d", probe),
		"--webhook-config-name", "bouncer-svc",
		"--pod-name", name,
		"--failure-policy", "Fail",
		"--shutdown-drain", "500ms"}, extra...)
	cmd := exec.Command(bouncerBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &bouncerProcess{cmd: cmd, probeURL: fmt.Sprintf("http://127.0.0.1:%d", probe), log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		_ = kube(t).AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), "bouncer-svc", metav1.DeleteOptions{})
		_ = kube(t).AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), "bouncer-svc-mutating", metav1.DeleteOptions{})
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, b)
		}
	})
	eventually(t, 60*time.Second, func() error {
		resp, err := http.Get(p.probeURL + "/readyz")
		if err != nil {
			return err
		}
		body := readAll(resp)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %d: %s", resp.StatusCode, body)
		}
		_, err = kube(t).AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), "bouncer-svc", getOpts)
		return err
	})
	return p
}

var deniedRe = regexp.MustCompile(`bouncer_admission_requests_total\{verdict="deny",webhook="resources"\} (\d+)`)

func deniedCount(metrics string) int {
	m := deniedRe.FindStringSubmatch(metrics)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
