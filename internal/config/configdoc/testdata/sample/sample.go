// Package sample is a configuration for configdoc's tests.
package sample

// Config is a role's configuration.
type Config struct {
	// Host is where it runs.
	Host string `yaml:"host"`
	// TLS is the TLS setup.
	TLS TLS `yaml:"tls"`
	// Peers are the other nodes.
	Peers []Peer `yaml:"peers"`
}

// Peer is an element of a list.
type Peer struct {
	// Addr is where the peer listens.
	Addr string `yaml:"addr"`
}

// TLS is a nested section.
type TLS struct {
	// CAFile and CertFile enable TLS.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`

	// Retries is counted apart: a blank line ends a group.
	Retries int `yaml:"retries"`
}

// Undocumented has a field without a comment.
type Undocumented struct {
	Bare int `yaml:"bare"`
}

// Default is the sample's defaults.
func Default() Config { return Config{Host: "box-1", TLS: TLS{Retries: 3}} }
