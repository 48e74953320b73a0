package certapi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/grpcserver"
	"hearth.dev/internal/peercred"
	certv1 "hearth.dev/proto/hearth/cert/v1"
	"hearth.dev/services/certd/internal/ca"
	"hearth.dev/services/certd/internal/leaf"
	"hearth.dev/services/certd/internal/names"
	"hearth.dev/services/certd/internal/store"
)

// serve runs the service on a real gRPC server on a temporary Unix socket and returns a
// client of it.
func serve(t *testing.T) certv1.CertificateServiceClient {
	t.Helper()
	dir := t.TempDir()
	st, err := store.NewFS(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	cons, _ := names.Local(names.DefaultInternalDomain)
	c, err := ca.Open(ca.Options{Storage: st, Constraints: cons})
	if err != nil {
		t.Fatal(err)
	}
	m, err := leaf.New(leaf.Options{Storage: st, CA: c, Policy: names.Policy{InternalDomain: names.DefaultInternalDomain},
		Issuers: map[leaf.Kind]leaf.Issuer{leaf.Local: leaf.LocalIssuer{CA: c, Lifetime: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpcserver.New(grpcserver.Config{Authorize: peercred.UIDs(uint32(os.Getuid()))})
	certv1.RegisterCertificateServiceServer(srv, New(m, c, time.Hour))
	srv.SetServing()
	sock := filepath.Join(dir, "c.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	conn, err := dial.Unix(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); cancel(); <-done })
	return certv1.NewCertificateServiceClient(conn)
}

func TestIssueMapsErrorsToCodes(t *testing.T) {
	cl := serve(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  *certv1.IssueCertificateRequest
		code codes.Code
	}{
		{"local name", &certv1.IssueCertificateRequest{DnsNames: []string{"nas.local"}}, codes.OK},
		{"no names", &certv1.IssueCertificateRequest{}, codes.InvalidArgument},
		{"public name from the local CA", &certv1.IssueCertificateRequest{DnsNames: []string{"example.com"}}, codes.InvalidArgument},
		{"address as a DNS name", &certv1.IssueCertificateRequest{DnsNames: []string{"10.0.0.1"}}, codes.InvalidArgument},
		{"challenge for a local certificate", &certv1.IssueCertificateRequest{DnsNames: []string{"nas.local"}, Challenge: certv1.Challenge_CHALLENGE_HTTP_01}, codes.InvalidArgument},
		{"unknown issuer", &certv1.IssueCertificateRequest{DnsNames: []string{"nas.local"}, Issuer: certv1.Issuer(9)}, codes.InvalidArgument},
		{"ACME not configured", &certv1.IssueCertificateRequest{DnsNames: []string{"www.example.org"}, Issuer: certv1.Issuer_ISSUER_ACME}, codes.FailedPrecondition},
		{"another owner's name", &certv1.IssueCertificateRequest{DnsNames: []string{"b.local"}, Owner: "a"}, codes.PermissionDenied},
		{"bad owner", &certv1.IssueCertificateRequest{DnsNames: []string{"a.local"}, Owner: "A B"}, codes.InvalidArgument},
		{"a name the owner holds", &certv1.IssueCertificateRequest{DnsNames: []string{"a-2.local"}, Owner: "a", HeldNames: []string{"A-2.local."}}, codes.OK},
		{"a name beside what the owner holds", &certv1.IssueCertificateRequest{DnsNames: []string{"a-3.local"}, Owner: "a", HeldNames: []string{"a-2.local"}}, codes.PermissionDenied},
		{"held names without an owner", &certv1.IssueCertificateRequest{DnsNames: []string{"a.local"}, HeldNames: []string{"a.local"}}, codes.InvalidArgument},
		{"a held name that is no name", &certv1.IssueCertificateRequest{DnsNames: []string{"a.local"}, Owner: "a", HeldNames: []string{"a..local"}}, codes.InvalidArgument},
	} {
		resp, err := cl.IssueCertificate(ctx, tc.req)
		if status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
		if err == nil && (len(resp.GetCertificate().GetKeyPem()) == 0 || resp.GetCertificate().GetIssuer() != certv1.Issuer_ISSUER_LOCAL) {
			t.Errorf("%s: key %d bytes, issuer %v", tc.name, len(resp.GetCertificate().GetKeyPem()), resp.GetCertificate().GetIssuer())
		}
	}
	if _, err := cl.GetCertificate(ctx, &certv1.GetCertificateRequest{Id: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetCertificate(nope): %v", err)
	}
}

func TestWatchFiltersByOwnerAndKeepsKeys(t *testing.T) {
	cl := serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cl.IssueCertificate(ctx, &certv1.IssueCertificateRequest{DnsNames: []string{"a.local"}, Owner: "a"}); err != nil {
		t.Fatal(err)
	}
	stream, err := cl.WatchCertificates(ctx, &certv1.WatchCertificatesRequest{Owner: "a", IncludeExisting: true, IncludeKey: true})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil || ev.GetEvent() != certv1.Event_EVENT_EXISTING || ev.GetCertificate().GetOwner() != "a" || len(ev.GetCertificate().GetKeyPem()) == 0 {
		t.Fatalf("first event: %v, %v", ev, err)
	}
	// b's certificate is not a's business; a's renewal is.
	if _, err := cl.IssueCertificate(ctx, &certv1.IssueCertificateRequest{DnsNames: []string{"b.local"}, Owner: "b"}); err != nil {
		t.Fatal(err)
	}
	renewed, err := cl.RenewCertificate(ctx, &certv1.RenewCertificateRequest{Id: ev.GetCertificate().GetId(), Owner: "a"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err = stream.Recv()
	if err != nil || ev.GetEvent() != certv1.Event_EVENT_RENEWED || ev.GetCertificate().GetSerial() != renewed.GetCertificate().GetSerial() {
		t.Errorf("next event: %v, %v; want a's renewal", ev, err)
	}
	list, err := cl.ListCertificates(ctx, &certv1.ListCertificatesRequest{})
	if err != nil || len(list.GetCertificates()) != 2 {
		t.Fatalf("list: %v, %v", list, err)
	}
	for _, c := range list.GetCertificates() {
		if len(c.GetKeyPem()) != 0 {
			t.Errorf("list carries the key of %s", c.GetId())
		}
	}
	rot, err := cl.RotateRoot(ctx, &certv1.RotateRootRequest{})
	if err != nil || rot.GetReissued() != 2 || len(rot.GetRoots()) != 2 || rot.GetRoots()[1].GetPublishedUntil() == nil {
		t.Errorf("RotateRoot with the default overlap: %v, %v", rot, err)
	}
	roots, err := cl.GetRoot(ctx, &certv1.GetRootRequest{})
	if err != nil || len(roots.GetRootsPem()) != 2 || !roots.GetRoots()[0].GetCurrent() {
		t.Errorf("GetRoot after rotation: %v, %v", roots, err)
	}
}
