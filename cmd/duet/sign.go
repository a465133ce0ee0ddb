package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/duetcdn/duet/edge/cachekey"
	"github.com/duetcdn/duet/internal/config"
	"github.com/duetcdn/duet/internal/signedurl"
)

// signCommand is `duet sign`: it mints a signed-URL token with the keys the edges use (the
// edge's config file and DUET_EDGE_SIGNED_URLS_* variables).
func signCommand(environ []string) *cobra.Command {
	var file, key, client, object string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "sign PREFIX",
		Short: "Mint a signed-URL token for the objects under a path prefix",
		Long: `Mint a token that the edges accept for every object under PREFIX (for a stream, its folder:
/vod/abc/ covers the playlists and every segment) until --ttl from now. The keys are the edge's:
signed_urls in --config and DUET_EDGE_SIGNED_URLS_KEYS; the token is signed with
signed_urls.sign_with (or --key). It prints the token; with --object, the path to play instead,
with the token in it (/_t/<token>/vod/abc/master.m3u8), whose relative URIs keep the token.
The query form is ?` + signedurl.QueryParam + `=<token>.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := defaultEdgeRoleConfig()
			if err := config.NewLoader("edge", &cfg, pflag.NewFlagSet("edge", pflag.ContinueOnError)).Load(file, environ); err != nil {
				return err
			}
			if err := cfg.SignedURLs.Validate("signed_urls"); err != nil {
				return err
			}
			norm, err := cachekey.New(cachekey.Config{})
			if err != nil {
				return err
			}
			// The edge matches the prefix against normalised, decoded paths: sign that spelling.
			prefix, _, err := norm.Normalize(args[0], "")
			if err != nil {
				return fmt.Errorf("prefix %q: %w", args[0], err)
			}
			prefix = signedurl.Canonical(prefix)
			var addr netip.Addr
			if client != "" {
				if addr, err = netip.ParseAddr(client); err != nil {
					return fmt.Errorf("--client %q is not an IP address: %w", client, err)
				}
			}
			if ttl <= 0 {
				return fmt.Errorf("--ttl %s must be positive", ttl)
			}
			tok, err := cfg.SignedURLs.Sign(key, prefix, time.Now().Add(ttl), addr)
			if err != nil {
				return err
			}
			out := tok
			if object != "" {
				obj, _, err := norm.Normalize(object, "")
				if err != nil || !signedurl.Covers(prefix, signedurl.Canonical(obj)) {
					return fmt.Errorf("--object %q is not under the prefix %s", object, prefix)
				}
				out = strings.TrimSuffix(signedurl.PathMarker, "/") + "/" + tok + obj
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "config", "c", "", "the edge's YAML config file (its signed_urls section holds the keys) (default: none, the keys from DUET_EDGE_SIGNED_URLS_*)")
	f.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is accepted")
	f.StringVar(&client, "client", "", "bind the token to this client IP address (default: any)")
	f.StringVar(&key, "key", "", "id of the key to sign with (default: signed_urls.sign_with, else the last key)")
	f.StringVar(&object, "object", "", "print the path of this object with the token in it, instead of the token (default: none, print the token)")
	return cmd
}
