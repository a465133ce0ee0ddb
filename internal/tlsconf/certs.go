package tlsconf

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// fileCerts serves the certificates of Config.Certificates and reloads a pair whose files
// changed. The handshake reads an immutable certSet through an atomic pointer; only the poller
// builds new ones.
type fileCerts struct {
	pairs []CertKey
	log   *slog.Logger
	set   atomic.Pointer[certSet]

	// The poller's own state.
	stamps  []pairStamp // what each pair's files looked like when it was last loaded
	failed  []pairStamp // what they looked like when loading last failed (logged once)
	failing []bool      // loading failed, and the files have not changed since
	certs   []*tls.Certificate
}

// certSet maps server names to certificates.
type certSet struct {
	exact    map[string]*tls.Certificate // lower-case name → certificate
	wildcard map[string]*tls.Certificate // "example.com" for *.example.com
	first    *tls.Certificate
}

// fileStamp tells whether a file changed: a new file put in place by rename (or a Kubernetes
// Secret's symlink swap) has another inode; one rewritten in place, another size or time.
type fileStamp struct {
	mtime time.Time
	size  int64
	ino   uint64
	dev   uint64
}

type pairStamp struct{ cert, key fileStamp }

func stat(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino, s.dev = st.Ino, uint64(st.Dev) //nolint:unconvert // Dev is int32 on some platforms
	}
	return s, nil
}

func statPair(p CertKey) (pairStamp, error) {
	c, err := stat(p.Cert)
	if err != nil {
		return pairStamp{}, err
	}
	k, err := stat(p.Key)
	return pairStamp{cert: c, key: k}, err
}

// newFileCerts loads every pair; one that does not load is an error.
func newFileCerts(pairs []CertKey, log *slog.Logger) (*fileCerts, error) {
	f := &fileCerts{pairs: pairs, log: log, stamps: make([]pairStamp, len(pairs)),
		failed: make([]pairStamp, len(pairs)), failing: make([]bool, len(pairs)), certs: make([]*tls.Certificate, len(pairs))}
	for i, p := range pairs {
		st, err := statPair(p)
		if err == nil {
			f.certs[i], err = loadPair(p)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: certificates[%d]: %w", ErrConfig, i, err)
		}
		f.stamps[i] = st
	}
	f.set.Store(newCertSet(f.certs))
	return f, nil
}

// loadPair reads one certificate and key and parses the leaf (its names and expiry).
func loadPair(p CertKey) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s and key %s: %w", p.Cert, p.Key, err)
	}
	if c.Leaf == nil || len(c.Leaf.DNSNames) == 0 && len(c.Leaf.IPAddresses) == 0 && c.Leaf.Subject.CommonName == "" {
		return nil, fmt.Errorf("certificate %s names no host", p.Cert)
	}
	return &c, nil
}

func newCertSet(certs []*tls.Certificate) *certSet {
	s := &certSet{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}, first: certs[0]}
	// Earlier pairs win a name two pairs share.
	for i := len(certs) - 1; i >= 0; i-- {
		c := certs[i]
		names := c.Leaf.DNSNames
		if len(names) == 0 && c.Leaf.Subject.CommonName != "" {
			names = []string{c.Leaf.Subject.CommonName}
		}
		for _, ip := range c.Leaf.IPAddresses {
			s.exact[ip.String()] = c
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				s.wildcard[rest] = c
			} else {
				s.exact[n] = c
			}
		}
	}
	return s
}

// lookup returns the certificate for a server name, or nil.
func (s *certSet) lookup(name string) *tls.Certificate {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if c := s.exact[name]; c != nil {
		return c
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		return s.wildcard[parent]
	}
	return nil
}

// reload loads the pairs whose files changed since they were loaded, and publishes the new
// set when one did. It reports whether it did.
func (f *fileCerts) reload() bool {
	changed := false
	for i, p := range f.pairs {
		st, err := statPair(p)
		if err == nil && st == f.stamps[i] {
			continue
		}
		if f.failing[i] && st == f.failed[i] {
			continue // the same broken (or missing) files: already logged
		}
		var c *tls.Certificate
		if err == nil {
			c, err = loadPair(p)
		}
		if err != nil {
			f.log.Warn("certificate not reloaded: keeping the previous one", "cert_file", p.Cert, "key_file", p.Key, "error", err)
			f.failed[i], f.failing[i] = st, true
			continue
		}
		f.stamps[i], f.failing[i], f.certs[i] = st, false, c
		changed = true
		f.log.Info("certificate reloaded", "cert_file", p.Cert, "names", c.Leaf.DNSNames, "not_after", c.Leaf.NotAfter)
	}
	if changed {
		f.set.Store(newCertSet(f.certs))
	}
	return changed
}
