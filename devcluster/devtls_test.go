package devcluster

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDevTLSKeptAndRenewed: `duet dev --https` makes its CA and certificate once (keys 0600),
// the certificate verifying against the CA for every address viewers use; a restart keeps both
// (a browser that trusts the CA keeps trusting it); a certificate near expiry is made again by
// the same CA; a damaged CA is replaced.
func TestDevTLSKeptAndRenewed(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	d, err := loadDevTLS(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
		st, err := os.Stat(filepath.Join(dir, "tls", f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, st.Mode(), err)
		}
	}
	leaf := func(d *devTLS) *x509.Certificate {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(d.Cert, d.Key)
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf
	}
	l := leaf(d)
	for _, name := range []string{"127.0.0.1", "127.0.10.1", "127.0.11.2", "127.0.14.9", "localhost"} {
		if _, err := l.Verify(x509.VerifyOptions{DNSName: name, Roots: d.pool, CurrentTime: now}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	again, err := loadDevTLS(dir, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if again.CASPKI != d.CASPKI || leaf(again).SerialNumber.Cmp(l.SerialNumber) != 0 {
		t.Fatal("a restart made a new CA or certificate")
	}

	later := now.Add(devLeafLifetime - devLeafRenew + time.Hour)
	renewed, err := loadDevTLS(dir, later)
	if err != nil {
		t.Fatal(err)
	}
	nl := leaf(renewed)
	if renewed.CASPKI != d.CASPKI || nl.SerialNumber.Cmp(l.SerialNumber) == 0 {
		t.Fatalf("near expiry: CA kept %v, certificate new %v", renewed.CASPKI == d.CASPKI, nl.SerialNumber.Cmp(l.SerialNumber) != 0)
	}
	if _, err := nl.Verify(x509.VerifyOptions{DNSName: "127.0.10.1", Roots: d.pool, CurrentTime: later}); err != nil {
		t.Fatalf("the new certificate: %v", err)
	}

	if err := os.WriteFile(filepath.Join(dir, "tls", "ca.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh, err := loadDevTLS(dir, later)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.CASPKI == d.CASPKI {
		t.Fatal("a damaged CA key was kept")
	}
	if _, err := leaf(fresh).Verify(x509.VerifyOptions{DNSName: "127.0.10.1", Roots: fresh.pool, CurrentTime: later}); err != nil {
		t.Fatalf("the certificate after a new CA: %v", err)
	}
}
