package integration

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hearth.dev/internal/dial"
	certv1 "hearth.dev/proto/hearth/cert/v1"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
)

// busyboxAs packs the busybox example package under another id, its web interface
// exposed only where expose says (such as "[lan]"); each of more replaces the first
// occurrence of its first string, which must be there, by its second.
func busyboxAs(t *testing.T, l *lab, ex, id, expose string, more ...[2]string) string {
	t.Helper()
	return repackBusybox(t, l, ex, id+"-1.0.0.hpkg", func(mf []byte) []byte {
		for _, r := range append([][2]string{{"id: busybox", "id: " + id}, {"expose: [lan, tor, domain]", "expose: " + expose}}, more...) {
			if !bytes.Contains(mf, []byte(r[0])) {
				t.Fatalf("busybox's manifest has no %q", r[0])
			}
			mf = bytes.Replace(mf, []byte(r[0]), []byte(r[1]), 1)
		}
		return mf
	})
}

// wantCode fails unless err has the code, and (when given) names what it should.
func wantCode(t *testing.T, what string, err error, code codes.Code, names string) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: %v; want %v", what, err, code)
		return
	}
	if names != "" && !strings.Contains(status.Convert(err).Message(), names) {
		t.Errorf("%s: %q does not name %q", what, status.Convert(err).Message(), names)
	}
}

// TestEffectsHost: two packages side by side (busybox, exposable on lan, tor and domain,
// and bbtwo, on lan only) call their package effects on their own host.sock, as their
// guestd would, with real netd and certd. Each effect works on the caller's own
// resources, and every one naming the other package's fails with PermissionDenied.
// hearthctl status shows health results and progress, hearthctl notifications lists and
// dismisses, an uninstall with --purge forgets the package's notifications, and without
// certd and netd the effects that need them are Unavailable.
func TestEffectsHost(t *testing.T) {
	l, ex := installLab(t, "busybox")
	e, pebble := newACMEEdgeLab(t, l)
	two := busyboxAs(t, l, ex, "bbtwo", "[lan]")
	for _, f := range []string{filepath.Join(ex, "busybox-1.0.0.hpkg"), two} {
		if out, err := hearthctl(t, l.runDir, "--timeout", "3m", "install", f); err != nil {
			t.Fatalf("install %s: %v\n%s", f, err, out)
		}
	}
	t.Cleanup(func() {
		hearthctl(t, l.runDir, "uninstall", "--purge", "busybox")
		hearthctl(t, l.runDir, "uninstall", "--purge", "bbtwo")
	})
	ctx := testCtx(t, 4*time.Minute)
	pkgs := []string{"busybox", "bbtwo"}
	other := map[string]string{"busybox": "bbtwo", "bbtwo": "busybox"}
	host := map[string]hostv1.HostServiceClient{}
	for _, p := range pkgs {
		host[p] = l.hostClient(t, p)
	}
	var rootPEM string
	if out, err := hearthctl(t, l.runDir, "cert", "root"); err != nil {
		t.Fatal(err)
	} else {
		rootPEM = out
	}

	t.Run("own resources", func(t *testing.T) {
		for _, p := range pkgs {
			h := host[p]
			// status.get: the package, its state and its daemons.
			st, err := h.GetStatus(ctx, &hostv1.GetStatusRequest{})
			if err != nil {
				t.Fatalf("%s: status.get: %v", p, err)
			}
			if st.GetPackage() != p || st.GetVersion() != "1.0.0" || st.GetState() != "running" || len(st.GetDaemons()) == 0 {
				t.Errorf("%s: status.get = %v", p, st)
			}
			for _, d := range st.GetDaemons() {
				if d.GetName() == "web" && d.GetState() != "ready" {
					t.Errorf("%s: daemon web is %q, want ready", p, d.GetState())
				}
			}
			// health.set and progress.set show in status.get.
			if _, err := h.SetHealth(ctx, &hostv1.SetHealthRequest{Name: "db", Result: "passing", Message: p + " db ok"}); err != nil {
				t.Fatalf("%s: health.set: %v", p, err)
			}
			if _, err := h.SetHealth(ctx, &hostv1.SetHealthRequest{Name: "sync", Result: "failing", Message: "peer unreachable"}); err != nil {
				t.Fatalf("%s: health.set: %v", p, err)
			}
			for _, done := range []uint64{3, 7} {
				if _, err := h.SetProgress(ctx, &hostv1.SetProgressRequest{Phase: "migration", Done: done, Total: 10, Message: "copying rows"}); err != nil {
					t.Fatalf("%s: progress.set: %v", p, err)
				}
			}
			if _, err := h.SetProgress(ctx, &hostv1.SetProgressRequest{Phase: "reindex", Done: 1, Total: 1}); err != nil { // ended at once
				t.Fatalf("%s: progress.set: %v", p, err)
			}
			st, err = h.GetStatus(ctx, &hostv1.GetStatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if hs := st.GetHealth(); len(hs) != 2 || hs[0].GetName() != "db" || hs[0].GetResult() != "passing" || hs[0].GetMessage() != p+" db ok" ||
				hs[1].GetName() != "sync" || hs[1].GetResult() != "failing" {
				t.Errorf("%s: health in status.get: %v", p, hs)
			}
			if ps := st.GetProgress(); len(ps) != 1 || ps[0].GetPhase() != "migration" || ps[0].GetDone() != 7 || ps[0].GetTotal() != 10 {
				t.Errorf("%s: progress in status.get: %v", p, ps)
			}
			// Bad input is refused, naming the parameter, and changes nothing.
			_, err = h.SetHealth(ctx, &hostv1.SetHealthRequest{Name: "db", Result: "great"})
			wantCode(t, p+": health.set result great", err, codes.InvalidArgument, "result")
			_, err = h.SetProgress(ctx, &hostv1.SetProgressRequest{Phase: "migration", Done: 11, Total: 10})
			wantCode(t, p+": progress.set done > total", err, codes.InvalidArgument, "done")
			if st2, _ := h.GetStatus(ctx, &hostv1.GetStatusRequest{}); st2.GetHealth()[0].GetResult() != "passing" || st2.GetProgress()[0].GetDone() != 7 {
				t.Errorf("%s: a refused call changed the status: %v", p, st2)
			}

			// container.address: its address on the bridge and its internal name.
			addr, err := h.GetContainerAddress(ctx, &hostv1.GetContainerAddressRequest{})
			if want := l.inspect(t, p).GetContainer().GetAddress(); err != nil || addr.GetIpv4() != want || want == "" || addr.GetName() != p+".hearth.internal" {
				t.Errorf("%s: container.address = %v, %v; want %s and %s.hearth.internal", p, addr, err, want, p)
			}

			// data_version.set / get, kept with the package.
			if _, err := h.SetDataVersion(ctx, &hostv1.SetDataVersionRequest{Version: p + "-schema-7"}); err != nil {
				t.Fatalf("%s: data_version.set: %v", p, err)
			}
			_, err = h.SetDataVersion(ctx, &hostv1.SetDataVersionRequest{Version: "bad\nversion"})
			wantCode(t, p+": data_version.set with a newline", err, codes.InvalidArgument, "version")
			if v, err := h.GetDataVersion(ctx, &hostv1.GetDataVersionRequest{}); err != nil || v.GetVersion() != p+"-schema-7" {
				t.Errorf("%s: data_version.get = %v, %v", p, v, err)
			}

			// notify: listed by hearthctl.
			n, err := h.Notify(ctx, &hostv1.NotifyRequest{Level: "warning", Title: p + " needs a hand", Message: "line one\nline two"})
			if err != nil || n.GetId() == "" {
				t.Fatalf("%s: notify = %v, %v", p, n, err)
			}
			_, err = h.Notify(ctx, &hostv1.NotifyRequest{Level: "warning", Title: strings.Repeat("t", 201)})
			wantCode(t, p+": notify with a long title", err, codes.InvalidArgument, "title")

			// interface.bind / addresses / unbind, through netd.
			b, err := h.BindInterface(ctx, &hostv1.BindInterfaceRequest{Interface: "web", Kind: "lan"})
			if err != nil || len(b.GetAddresses()) != 1 || b.GetAddresses()[0].GetName() != p+".local" || b.GetAddresses()[0].GetKind() != "lan" {
				t.Fatalf("%s: interface.bind web lan = %v, %v", p, b, err)
			}
			as, err := h.GetAddresses(ctx, &hostv1.GetAddressesRequest{Interface: p + "/web"})
			if err != nil || len(as.GetAddresses()) == 0 {
				t.Errorf("%s: interface.addresses %s/web = %v, %v", p, p, as, err)
			}
			for _, a := range as.GetAddresses() {
				if a.GetInterface() != "web" {
					t.Errorf("%s: address of another interface: %v", p, a)
				}
			}
			_, err = h.GetAddresses(ctx, &hostv1.GetAddressesRequest{Interface: "db"})
			wantCode(t, p+": interface.addresses of an undeclared interface", err, codes.NotFound, "db")

			// certificate.get: its own names from the local CA, owned by the package.
			c, err := h.GetCertificate(ctx, &hostv1.GetCertificateRequest{Names: []string{p + ".local", p + ".hearth.internal"}})
			if err != nil {
				t.Fatalf("%s: certificate.get: %v", p, err)
			}
			if _, err := tls.X509KeyPair([]byte(c.GetCertificatePem()), []byte(c.GetPrivateKeyPem())); err != nil {
				t.Errorf("%s: the key does not go with the certificate: %v", p, err)
			}
			if !strings.Contains(c.GetRootsPem(), strings.TrimSpace(rootPEM)) {
				t.Errorf("%s: roots_pem lacks the local root", p)
			}
			leaf, _ := pem.Decode([]byte(c.GetCertificatePem()))
			cert, err := x509.ParseCertificate(leaf.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM([]byte(c.GetRootsPem()))
			inter := x509.NewCertPool()
			inter.AppendCertsFromPEM([]byte(c.GetCertificatePem()))
			for _, name := range []string{p + ".local", p + ".hearth.internal"} {
				if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
					t.Errorf("%s: the certificate does not verify for %s: %v", p, name, err)
				}
			}
		}
		// The certificates are the packages' own, in certd's records.
		var certs certv1.ListCertificatesResponse
		hearthctlJSON(t, l.runDir, &certs, "cert", "ls")
		owners := map[string]string{}
		for _, c := range certs.GetCertificates() {
			owners[strings.Join(c.GetDnsNames(), ",")] = c.GetOwner()
		}
		for _, p := range pkgs {
			if o := owners[p+".hearth.internal,"+p+".local"]; o != p {
				t.Errorf("certd's certificate for %s's names is owned by %q, want %s (%v)", p, o, p, owners)
			}
		}
	})

	const domain = "shop.busybox.hearth.test"
	t.Run("domain", func(t *testing.T) {
		// busybox binds a domain (netd gets its certificate from Pebble through certd),
		// then asks for a certificate of its own for it: certd issues it to busybox as the
		// owner, the domain being one busybox holds.
		b, err := host["busybox"].BindInterface(ctx, &hostv1.BindInterfaceRequest{Interface: "web", Kind: "domain", Domain: "Shop.Busybox.hearth.test."})
		if err != nil || b.GetAddresses()[0].GetName() != domain || b.GetAddresses()[0].GetKind() != "domain" {
			t.Fatalf("busybox: interface.bind web domain = %v, %v", b, err)
		}
		c, err := host["busybox"].GetCertificate(ctx, &hostv1.GetCertificateRequest{Names: []string{domain}})
		if err != nil {
			t.Fatalf("busybox: certificate.get %s: %v", domain, err)
		}
		if _, err := tls.X509KeyPair([]byte(c.GetCertificatePem()), []byte(c.GetPrivateKeyPem())); err != nil {
			t.Errorf("busybox: the key does not go with the certificate of %s: %v", domain, err)
		}
		verifyACME(t, pebble, []byte(c.GetCertificatePem()), domain)
		var certs certv1.ListCertificatesResponse
		hearthctlJSON(t, l.runDir, &certs, "cert", "ls")
		owned := false
		for _, c := range certs.GetCertificates() {
			owned = owned || (strings.Join(c.GetDnsNames(), ",") == domain && c.GetOwner() == "busybox" && c.GetIssuer() == certv1.Issuer_ISSUER_ACME)
		}
		if !owned {
			t.Errorf("certd has no ACME certificate of %s owned by busybox: %v", domain, certs.GetCertificates())
		}
		_, err = host["busybox"].GetCertificate(ctx, &hostv1.GetCertificateRequest{Names: []string{"busybox.local", domain}})
		wantCode(t, "busybox: certificate.get of a local name and a domain", err, codes.InvalidArgument, "names")
		// bbtwo's manifest exposes web on the LAN only.
		for _, kind := range []string{"tor", "domain"} {
			_, err = host["bbtwo"].BindInterface(ctx, &hostv1.BindInterfaceRequest{Interface: "web", Kind: kind, Domain: map[string]string{"domain": "two.example.org"}[kind]})
			wantCode(t, "bbtwo: interface.bind web "+kind, err, codes.PermissionDenied, kind)
		}
	})

	t.Run("the other's resources", func(t *testing.T) {
		for _, p := range pkgs {
			h, o := host[p], other[p]
			_, err := h.BindInterface(ctx, &hostv1.BindInterfaceRequest{Interface: o + "/web", Kind: "lan"})
			wantCode(t, p+": interface.bind "+o+"/web", err, codes.PermissionDenied, o+"/web")
			_, err = h.UnbindInterface(ctx, &hostv1.UnbindInterfaceRequest{Interface: o + "/web"})
			wantCode(t, p+": interface.unbind "+o+"/web", err, codes.PermissionDenied, o+"/web")
			_, err = h.GetAddresses(ctx, &hostv1.GetAddressesRequest{Interface: o + "/web"})
			wantCode(t, p+": interface.addresses "+o+"/web", err, codes.PermissionDenied, o+"/web")
			for _, name := range []string{o + ".local", "www." + o + ".local", o + ".hearth.internal"} {
				_, err = h.GetCertificate(ctx, &hostv1.GetCertificateRequest{Names: []string{p + ".local", name}})
				wantCode(t, p+": certificate.get "+name, err, codes.PermissionDenied, name)
			}
			// What the caller sets is its own: the other's status has none of it.
			st, err := host[o].GetStatus(ctx, &hostv1.GetStatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, hr := range st.GetHealth() {
				if strings.Contains(hr.GetMessage(), p+" ") {
					t.Errorf("%s's status shows %s's health result %v", o, p, hr)
				}
			}
		}
		// The domain busybox holds is not bbtwo's to bind, unbind or get a certificate for.
		_, err := host["bbtwo"].GetCertificate(ctx, &hostv1.GetCertificateRequest{Names: []string{domain}})
		wantCode(t, "bbtwo: certificate.get of busybox's domain", err, codes.PermissionDenied, domain)
		_, err = host["bbtwo"].BindInterface(ctx, &hostv1.BindInterfaceRequest{Interface: "web", Kind: "domain", Domain: domain})
		wantCode(t, "bbtwo: interface.bind of busybox's domain", err, codes.PermissionDenied, domain)
		_, err = host["bbtwo"].UnbindInterface(ctx, &hostv1.UnbindInterfaceRequest{Interface: "web", Domain: domain})
		wantCode(t, "bbtwo: interface.unbind of busybox's domain", err, codes.PermissionDenied, domain)
		_, err = host["busybox"].UnbindInterface(ctx, &hostv1.UnbindInterfaceRequest{Interface: "web", Domain: "never.example.org"})
		wantCode(t, "busybox: interface.unbind of a domain it does not have", err, codes.NotFound, "never.example.org")
		// Data versions are each package's own.
		for _, p := range pkgs {
			if v, err := host[p].GetDataVersion(ctx, &hostv1.GetDataVersionRequest{}); err != nil || v.GetVersion() != p+"-schema-7" {
				t.Errorf("%s: data_version.get = %v, %v", p, v, err)
			}
		}
		// busybox's domain binding is still there.
		as, err := host["busybox"].GetAddresses(ctx, &hostv1.GetAddressesRequest{Interface: "web"})
		found := false
		for _, a := range as.GetAddresses() {
			found = found || a.GetName() == domain
		}
		if err != nil || !found {
			t.Errorf("busybox's domain binding after bbtwo's attempts: %v, %v", as, err)
		}
	})

	t.Run("hearthctl", func(t *testing.T) {
		out, err := hearthctl(t, l.runDir, "status", "busybox")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("hearthctl status busybox:\n%s", out)
		for _, want := range []string{"HEALTH", "db", "passing", "busybox db ok", "sync", "failing", "PROGRESS", "migration", "7/10 (70%)", "copying rows"} {
			if !strings.Contains(out, want) {
				t.Errorf("hearthctl status busybox lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "reindex") {
			t.Errorf("hearthctl status shows an ended phase:\n%s", out)
		}
		// -o json: one document, the package's status under "package_status".
		out, err = hearthctl(t, l.runDir, "-o", "json", "status", "busybox")
		must(t, err)
		var doc struct {
			PackageStatus json.RawMessage `json:"package_status"`
		}
		var pst hostv1.GetStatusResponse
		if err := json.Unmarshal([]byte(out), &doc); err != nil || protojsonUnmarshal(doc.PackageStatus, &pst) != nil ||
			pst.GetPackage() != "busybox" || len(pst.GetHealth()) != 2 || len(pst.GetProgress()) != 1 {
			t.Errorf("hearthctl -o json status busybox: %v, package_status %v\n%s", err, &pst, out)
		}
		conn, err := dial.Unix(filepath.Join(l.runDir, "containerd-lite.sock"))
		must(t, err)
		defer conn.Close()
		resp, err := containerv1.NewPackageServiceClient(conn).GetPackageStatus(ctx, &containerv1.GetPackageStatusRequest{Id: "bbtwo"})
		if err != nil || resp.GetStatus().GetPackage() != "bbtwo" || len(resp.GetStatus().GetHealth()) != 2 || resp.GetStatus().GetHealth()[0].GetMessage() != "bbtwo db ok" {
			t.Errorf("GetPackageStatus(bbtwo) = %v, %v", resp, err)
		}
		_, err = containerv1.NewPackageServiceClient(conn).GetPackageStatus(ctx, &containerv1.GetPackageStatusRequest{Id: "nope"})
		wantCode(t, "GetPackageStatus(nope)", err, codes.NotFound, "nope")

		var ns containerv1.ListNotificationsResponse
		hearthctlJSON(t, l.runDir, &ns, "notifications")
		byPkg := map[string]string{}
		for _, n := range ns.GetNotifications() {
			byPkg[n.GetPackage()] = n.GetId()
			if n.GetLevel() != "warning" || n.GetTitle() != n.GetPackage()+" needs a hand" || n.GetMessage() != "line one\nline two" {
				t.Errorf("notification %v", n)
			}
		}
		if len(ns.GetNotifications()) != 2 || byPkg["busybox"] == "" || byPkg["bbtwo"] == "" {
			t.Fatalf("hearthctl notifications: %v", ns.GetNotifications())
		}
		out, err = hearthctl(t, l.runDir, "notifications")
		if err != nil || !strings.Contains(out, "busybox needs a hand") || !strings.Contains(out, "line one ...") {
			t.Errorf("hearthctl notifications: %v\n%s", err, out)
		}
		t.Logf("hearthctl notifications:\n%s", out)
		// Dismissing another package's id under --package changes nothing.
		if out, err := hearthctl(t, l.runDir, "notifications", "dismiss", "--package", "busybox", byPkg["bbtwo"]); err == nil || !strings.Contains(err.Error(), "NotFound") {
			t.Errorf("dismiss bbtwo's notification as busybox's: %v\n%s", err, out)
		}
		if out, err := hearthctl(t, l.runDir, "notifications", "dismiss", byPkg["busybox"]); err != nil || !strings.Contains(out, "1 dismissed") {
			t.Errorf("dismiss %s: %v\n%s", byPkg["busybox"], err, out)
		}
		hearthctlJSON(t, l.runDir, &ns, "notifications", "ls")
		if len(ns.GetNotifications()) != 1 || ns.GetNotifications()[0].GetPackage() != "bbtwo" {
			t.Errorf("after dismissing busybox's: %v", ns.GetNotifications())
		}
		hearthctlJSON(t, l.runDir, &ns, "notifications", "ls", "--all", "--package", "busybox")
		if len(ns.GetNotifications()) != 1 || !ns.GetNotifications()[0].GetDismissed() {
			t.Errorf("busybox's with --all: %v", ns.GetNotifications())
		}
	})

	t.Run("unbind", func(t *testing.T) {
		for _, p := range pkgs {
			u, err := host[p].UnbindInterface(ctx, &hostv1.UnbindInterfaceRequest{Interface: "web", Kind: "lan"})
			if err != nil || u.GetRemoved() != 1 {
				t.Errorf("%s: interface.unbind web lan = %v, %v; want 1 removed", p, u, err)
			}
		}
		as, err := host["busybox"].GetAddresses(ctx, &hostv1.GetAddressesRequest{})
		for _, a := range as.GetAddresses() {
			if a.GetKind() == "lan" {
				t.Errorf("busybox still has a LAN address after unbinding it: %v", a)
			}
		}
		if err != nil {
			t.Error(err)
		}
	})

	t.Run("without certd and netd", func(t *testing.T) {
		e.certd.stop(syscall.SIGTERM)
		_, err := host["busybox"].GetCertificate(ctx, &hostv1.GetCertificateRequest{Names: []string{"busybox.local"}})
		wantCode(t, "certificate.get without certd", err, codes.Unavailable, "certd")
		l.netd.stop(syscall.SIGTERM)
		_, err = host["busybox"].GetAddresses(ctx, &hostv1.GetAddressesRequest{})
		wantCode(t, "interface.addresses without netd", err, codes.Unavailable, "netd")
		_, err = host["busybox"].BindInterface(ctx, &hostv1.BindInterfaceRequest{Interface: "web", Kind: "lan"})
		wantCode(t, "interface.bind without netd", err, codes.Unavailable, "netd")
		// The rest goes on.
		if _, err := host["busybox"].SetHealth(ctx, &hostv1.SetHealthRequest{Name: "db", Result: "starting"}); err != nil {
			t.Error(err)
		}
	})

	t.Run("during an install", func(t *testing.T) {
		// The install hook sleeps; meanwhile the package sets its progress and its data
		// version. hearthctl install shows the progress; the data version is committed
		// with the package.
		slow := busyboxAs(t, l, ex, "bbslow", "[lan]", [2]string{`[/bin/sh, -c, "echo`, `[/bin/sh, -c, "sleep 4; echo`})
		var stderr bytes.Buffer
		cmd := exec.Command(filepath.Join(binDir, "hearthctl"), "--run-dir", l.runDir, "--timeout", "3m", "install", slow)
		cmd.Stderr = &stderr
		must(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { hearthctl(t, l.runDir, "uninstall", "--purge", "bbslow") })
		sock := filepath.Join(l.stateDir, "containers", "bbslow", "media", "host", "host.sock")
		waitFor(t, "bbslow's host.sock", time.Minute, func() bool { _, err := os.Stat(sock); return err == nil })
		h := l.hostClient(t, "bbslow")
		var st *hostv1.GetStatusResponse
		waitFor(t, "bbslow's status during its install", 10*time.Second, func() bool {
			var err error
			st, err = h.GetStatus(ctx, &hostv1.GetStatusRequest{})
			return err == nil
		})
		if st.GetPackage() != "bbslow" || st.GetVersion() != "1.0.0" {
			t.Errorf("status.get during the install: %v", st)
		}
		if _, err := h.SetProgress(ctx, &hostv1.SetProgressRequest{Phase: "install", Done: 5, Total: 10, Message: "fetching"}); err != nil {
			t.Fatalf("progress.set during the install: %v", err)
		}
		if _, err := h.SetDataVersion(ctx, &hostv1.SetDataVersionRequest{Version: "3"}); err != nil {
			t.Fatalf("data_version.set during the install: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("install bbslow: %v\n%s", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "install 5/10: fetching") {
			t.Errorf("hearthctl install did not show the package's progress:\n%s", stderr.String())
		}
		if v, err := h.GetDataVersion(ctx, &hostv1.GetDataVersionRequest{}); err != nil || v.GetVersion() != "3" {
			t.Errorf("data version after the install: %v, %v; want 3", v, err)
		}
	})

	t.Run("waiting for", func(t *testing.T) {
		// A package whose dependency is not installed waits for it: hearthctl status and
		// GetPackageStatus say so.
		wait := busyboxAs(t, l, ex, "bbwait", "[lan]", [2]string{"interfaces:\n", "dependencies:\n  bbmissing: {version: \">=1.0\"}\ninterfaces:\n"})
		if _, err := hearthctl(t, l.runDir, "install", wait); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hearthctl(t, l.runDir, "uninstall", "--purge", "bbwait") })
		if out, err := hearthctl(t, l.runDir, "start", "bbwait"); err != nil {
			t.Fatalf("start bbwait: %v\n%s", err, out)
		}
		out, err := hearthctl(t, l.runDir, "status", "bbwait")
		if err != nil || !strings.Contains(out, "waiting for: bbmissing (not installed)") {
			t.Errorf("hearthctl status bbwait: %v\n%s", err, out)
		}
		conn, err := dial.Unix(filepath.Join(l.runDir, "containerd-lite.sock"))
		must(t, err)
		defer conn.Close()
		resp, err := containerv1.NewPackageServiceClient(conn).GetPackageStatus(ctx, &containerv1.GetPackageStatusRequest{Id: "bbwait"})
		if ws := resp.GetStatus().GetWaitingFor(); err != nil || len(ws) != 1 || ws[0].GetPackage() != "bbmissing" || resp.GetStatus().GetState() == "running" {
			t.Errorf("GetPackageStatus(bbwait) = %v, %v; want it waiting for bbmissing", resp, err)
		}
	})

	t.Run("uninstall", func(t *testing.T) {
		// Without --purge the notifications stay; with it they go.
		if _, err := hearthctl(t, l.runDir, "uninstall", "bbtwo"); err != nil {
			t.Fatal(err)
		}
		var ns containerv1.ListNotificationsResponse
		hearthctlJSON(t, l.runDir, &ns, "notifications", "ls", "--package", "bbtwo")
		if len(ns.GetNotifications()) != 1 {
			t.Errorf("bbtwo's notifications after an uninstall that keeps its data: %v", ns.GetNotifications())
		}
		if _, err := hearthctl(t, l.runDir, "--timeout", "3m", "install", two); err != nil {
			t.Fatal(err)
		}
		if v, err := l.hostClient(t, "bbtwo").GetStatus(ctx, &hostv1.GetStatusRequest{}); err != nil || len(v.GetHealth()) != 0 {
			t.Errorf("a new bbtwo container shows the old one's health results: %v, %v", v, err)
		}
		if _, err := hearthctl(t, l.runDir, "uninstall", "--purge", "bbtwo"); err != nil {
			t.Fatal(err)
		}
		hearthctlJSON(t, l.runDir, &ns, "notifications", "ls", "--all")
		for _, n := range ns.GetNotifications() {
			if n.GetPackage() == "bbtwo" {
				t.Errorf("bbtwo's notification outlived its purge: %v", n)
			}
		}
		if len(ns.GetNotifications()) != 1 {
			t.Errorf("busybox's notification: %v", ns.GetNotifications())
		}
	})

	t.Run("backup keeps the data version", func(t *testing.T) {
		repo, pass := filepath.Join(tempDir(t), "backups"), filepath.Join(l.dir, "pass")
		must(t, os.WriteFile(pass, []byte("pw"), 0o600))
		if _, err := hearthctl(t, l.runDir, "backup", "busybox", "--to", repo, "--passphrase-file", pass); err != nil {
			t.Fatal(err)
		}
		if _, err := host["busybox"].SetDataVersion(ctx, &hostv1.SetDataVersionRequest{Version: "after-the-backup"}); err != nil {
			t.Fatal(err)
		}
		if _, err := hearthctl(t, l.runDir, "--timeout", "3m", "restore", "busybox", "--from", repo, "--passphrase-file", pass); err != nil {
			t.Fatal(err)
		}
		v, err := l.hostClient(t, "busybox").GetDataVersion(ctx, &hostv1.GetDataVersionRequest{})
		if err != nil || v.GetVersion() != "busybox-schema-7" {
			t.Errorf("data version after restoring the backup: %v, %v; want the backup's, busybox-schema-7", v, err)
		}
	})

}
