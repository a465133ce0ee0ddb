package bus_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/testenv"
)

// testPKI writes a CA and, per name, a certificate for 127.0.0.1 signed by it (usable as server
// and client certificate), and returns the files.
func testPKI(t *testing.T, names ...string) map[string]*natsserver.TLS {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "duet test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", caDER)
	files := map[string]*natsserver.TLS{}
	for i, name := range names {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames:     []string{"localhost"},
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		f := &natsserver.TLS{CAFile: caFile, CertFile: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+"-key.pem")}
		writePEM(t, f.CertFile, "CERTIFICATE", der)
		writePEM(t, f.KeyFile, "EC PRIVATE KEY", keyDER)
		files[name] = f
	}
	return files
}

func writePEM(t *testing.T, file, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLinkTLSAndAuth: regions linked over mutual TLS with a leaf password pass core subjects and
// purges; a region dialling with a wrong password is refused and nothing crosses.
func TestLinkTLSAndAuth(t *testing.T) {
	t.Parallel()
	pki := testPKI(t, "A", "B", "C")
	a := startRegion(t, "A", natsserver.Config{LeafPort: -1, LeafUser: leafUser, LeafPassword: leafPassword, TLS: pki["A"]})
	b := startRegion(t, "B", natsserver.Config{LeafRemotes: []string{a.leafRemote()}, TLS: pki["B"]})
	bad := withUser(t, natsserver.LeafURL(a.server()), leafUser, "wrong")
	c := startRegion(t, "C", natsserver.Config{LeafRemotes: []string{bad}, TLS: pki["C"]})
	dumpLogs(t, a, b, c)

	waitCore(t, b, a, bus.HealthSubject("B", "e1"), 10*time.Second)
	waitCore(t, a, b, bus.PurgeAckSubject("B", "b1", "x"), 10*time.Second)
	a.ensureStream(t, "B")
	b.ensureStream(t, "A")
	a.publishPurge(t, "over-tls")
	testenv.Eventually(t, 15*time.Second, func() bool { return b.hasPurge(t, "A", "over-tls") }, "purge never crossed the TLS link")

	// C is refused: A logs the failed authentication (after a TLS handshake that succeeded, so
	// it is the password that is wrong), and C never links.
	testenv.Eventually(t, 10*time.Second, func() bool { return a.logs.contains("authentication error") },
		"A never refused C's leafnode connection")
	sub, err := a.nc.SubscribeSync(bus.HealthWildcard)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := c.nc.Publish(bus.HealthSubject("C", "e1"), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if m, err := sub.NextMsg(25 * time.Millisecond); err == nil {
			t.Fatalf("a heartbeat from C (wrong leaf password) reached A on %s", m.Subject)
		}
	}
	if n := c.server().NumLeafNodes(); n != 0 {
		t.Errorf("C has %d leafnode connections, want 0", n)
	}
	if n := a.server().NumLeafNodes(); n != 1 {
		t.Errorf("A has %d leafnode connections, want 1 (B)", n)
	}
}
