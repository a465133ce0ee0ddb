package main

import "github.com/duetcdn/duet/internal/bus"

// natsConfig is how a role reaches its region's NATS.
type natsConfig struct {
	// URLs of the region's NATS servers. Only an edge runs without (standalone, no purge stream).
	URLs []string `yaml:"urls"`
	// CredsFile is a NATS credentials (JWT) file; or NKeyFile, or User/Password, or Token.
	CredsFile string `yaml:"creds_file"`
	// NKeyFile is a file holding this process's NATS nkey seed (mode 0600); the servers know its
	// public key and what it may do. README.md, "NATS identities".
	NKeyFile string `yaml:"nkey_file"`
	// User and Password authenticate with a NATS user's password instead.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// Token authenticates with a NATS server token instead.
	Token string `yaml:"token"`
	// CAFile, CertFile, KeyFile enable TLS (the cert and key for mutual TLS).
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

func (c natsConfig) conn(name string) bus.ConnConfig {
	cc := bus.ConnConfig{URLs: c.URLs, Name: name, CredsFile: c.CredsFile, NKeyFile: c.NKeyFile, User: c.User, Password: c.Password, Token: c.Token}
	if c.CAFile != "" || c.CertFile != "" {
		cc.TLS = &bus.TLSConfig{CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile}
	}
	return cc
}
