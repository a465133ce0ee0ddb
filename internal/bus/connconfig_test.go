package bus

import (
	"errors"
	"testing"
)

func TestConnConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  ConnConfig
		ok   bool
	}{
		{"url only", ConnConfig{URLs: []string{"nats://127.0.0.1:4222"}}, true},
		{"user and password", ConnConfig{URLs: []string{"nats://h:1"}, User: "u", Password: "p"}, true},
		{"mutual TLS", ConnConfig{URLs: []string{"tls://h:1"}, TLS: &TLSConfig{CAFile: "ca", CertFile: "c", KeyFile: "k"}}, true},
		{"no url", ConnConfig{}, false},
		{"empty url", ConnConfig{URLs: []string{" "}}, false},
		{"comma list", ConnConfig{URLs: []string{"nats://a:1,nats://b:1"}}, false},
		{"creds and user", ConnConfig{URLs: []string{"nats://h:1"}, CredsFile: "x.creds", User: "u"}, false},
		{"user and token", ConnConfig{URLs: []string{"nats://h:1"}, User: "u", Token: "t"}, false},
		{"password alone", ConnConfig{URLs: []string{"nats://h:1"}, Password: "p"}, false},
		{"cert without key", ConnConfig{URLs: []string{"tls://h:1"}, TLS: &TLSConfig{CertFile: "c"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.validate()
			if tc.ok != (err == nil) {
				t.Fatalf("validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}
