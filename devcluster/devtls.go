package devcluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// devTLS is `duet dev --https`'s local CA and the one certificate it signs for every loopback
// address the cluster's viewers reach (steering on 127.0.0.1, the edges on 127.0.<10+i>.<1+j>),
// kept under <dir>/tls across restarts: a browser told to trust the CA once keeps trusting it.
type devTLS struct {
	CA, Cert, Key string // PEM files: the CA's certificate, the leaf's chain and its key
	// CASPKI is the base64 SHA-256 of the CA's public key, what chromium's
	// --ignore-certificate-errors-spki-list takes.
	CASPKI string
	pool   *x509.CertPool
}

// Lifetimes: the CA lasts; the leaf stays within what browsers accept (398 days) and is made
// again when less than a month is left, signed by the same CA.
const (
	devCALifetime   = 10 * 365 * 24 * time.Hour
	devLeafLifetime = 397 * 24 * time.Hour
	devLeafRenew    = 30 * 24 * time.Hour
)

// devTLSNames are the leaf's names: every address Layout gives a viewer-facing listener, for
// the most regions and edges `duet dev` runs, so a restart with other --regions or --edges
// keeps the certificate.
func devTLSNames() (dns []string, ips []net.IP) {
	ips = append(ips, net.IPv4(127, 0, 0, 1), net.IPv6loopback)
	for i := range 5 {
		for j := range 9 {
			ips = append(ips, net.ParseIP(layout{}.edgeIP(i, j)))
		}
	}
	return []string{"localhost"}, ips
}

// loadDevTLS reads <dir>/tls's CA and certificate, making whatever is missing, unreadable or
// near expiry; keys are written 0600.
func loadDevTLS(dir string, now time.Time) (*devTLS, error) {
	tdir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", tdir, err)
	}
	d := &devTLS{CA: filepath.Join(tdir, "ca.crt"), Cert: filepath.Join(tdir, "tls.crt"), Key: filepath.Join(tdir, "tls.key")}
	caKeyFile := filepath.Join(tdir, "ca.key")
	caCert, caKey, err := readCA(d.CA, caKeyFile, now)
	if err != nil {
		if caCert, caKey, err = newDevCA(d.CA, caKeyFile, now); err != nil {
			return nil, err
		}
	}
	d.pool = x509.NewCertPool()
	d.pool.AddCert(caCert)
	sum := sha256.Sum256(caCert.RawSubjectPublicKeyInfo)
	d.CASPKI = base64.StdEncoding.EncodeToString(sum[:])
	if d.leafValid(now) {
		return d, nil
	}
	if err := d.issueLeaf(caCert, caKey, now); err != nil {
		return nil, err
	}
	return d, nil
}

// readCA loads the CA when its files are there, parse, match and are not expiring.
func readCA(certFile, keyFile string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("the dev CA's key is not ECDSA")
	}
	c := pair.Leaf
	if !c.IsCA || now.Add(devLeafLifetime).After(c.NotAfter) {
		return nil, nil, errors.New("the dev CA expires before a certificate it would sign")
	}
	return c, key, nil
}

func newDevCA(certFile, keyFile string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("dev CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "Duet dev CA (duet dev --https, this machine only)", Organization: []string{"Duet dev"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(devCALifetime),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("dev CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("dev CA certificate: %w", err)
	}
	if err := writeKeyPair(certFile, keyFile, [][]byte{der}, key); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// leafValid reports whether the leaf on disk is signed by the CA, names every address and
// has more than devLeafRenew left.
func (d *devTLS) leafValid(now time.Time) bool {
	pair, err := tls.LoadX509KeyPair(d.Cert, d.Key)
	if err != nil || now.Add(devLeafRenew).After(pair.Leaf.NotAfter) {
		return false
	}
	dns, ips := devTLSNames()
	for _, n := range dns {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: d.pool, CurrentTime: now}); err != nil {
			return false
		}
	}
	for _, ip := range ips {
		if pair.Leaf.VerifyHostname(ip.String()) != nil {
			return false
		}
	}
	return true
}

func (d *devTLS) issueLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("dev certificate key: %w", err)
	}
	dns, ips := devTLSNames()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "duet dev", Organization: []string{"Duet dev"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(devLeafLifetime),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: dns, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("dev certificate: %w", err)
	}
	// The chain served ends with the CA itself, unusual but harmless: a browser started with
	// --ignore-certificate-errors-spki-list matches the hashes against the chain the server
	// sends, so the CA's (stable across new leaves) is found there.
	return writeKeyPair(d.Cert, d.Key, [][]byte{der, ca.Raw}, key)
}

// writeKeyPair writes a certificate chain and its key (both 0600: the roles read them as the same
// user), the key first, so a half-done write is never a certificate without its key.
func writeKeyPair(certFile, keyFile string, chain [][]byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := writePrivate(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})); err != nil {
		return err
	}
	var certs []byte
	for _, der := range chain {
		certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return writePrivate(certFile, certs)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)) // crypto/rand never fails
	return n.Add(n, big.NewInt(1))
}

// client is an HTTP client that trusts the dev CA (for health checks of HTTPS roles).
func (d *devTLS) client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.pool, MinVersion: tls.VersionTLS12}}}
}

// scheme is the viewers' URL scheme: https with d, http without.
func (d *devTLS) scheme() string {
	if d == nil {
		return "http://"
	}
	return "https://"
}

// curlFlag is what curl needs to trust the dev CA ("" over plain HTTP).
func (d *devTLS) curlFlag() string {
	if d == nil {
		return ""
	}
	return " --cacert " + d.CA
}

// tlsSpec is the roles' TLS settings (nil over plain HTTP).
func (c *cluster) tlsSpec() *TLSSpec {
	if c.tls == nil {
		return nil
	}
	return &TLSSpec{Cert: c.tls.Cert, Key: c.tls.Key, CA: c.tls.CA}
}
