package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/purgereq"
	"github.com/duetcdn/duet/purge"
)

func purgeCommand(logger func() (*slog.Logger, error), stdout io.Writer, environ []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Purge cached objects everywhere, or run the purge API",
		Long: `Purge cached objects from every edge in every region:

  duet purge url /vod/abc/720p/seg1.ts /vod/abc/master.m3u8
  duet purge prefix /vod/abc/ --soft
  duet purge tag show-abc --wait 5s

The API and token come from --api and --token, or DUET_PURGE_API and DUET_PURGE_TOKEN.`,
	}
	var api, token, wait, id string
	var soft bool
	for _, kind := range []string{"url", "prefix", "tag"} {
		sub := &cobra.Command{
			Use:   kind + " VALUE...",
			Short: "Purge by " + kind,
			Args:  cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if api == "" {
					api = envValue(environ, "DUET_PURGE_API", "http://127.0.0.1:8090")
				}
				if token == "" {
					token = envValue(environ, "DUET_PURGE_TOKEN", "")
				}
				if token == "" {
					return errors.New("no token: pass --token or set DUET_PURGE_TOKEN")
				}
				req := purge.Request{ID: id, Target: purgereq.Target{Soft: soft}, Wait: wait}
				switch kind {
				case "url":
					req.URLs = args
				case "prefix":
					req.Prefixes = args
				case "tag":
					req.Tags = args
				}
				c := &purge.Client{BaseURL: api, Token: token}
				st, err := c.Purge(cmd.Context(), req)
				if err != nil {
					return err
				}
				printStatus(stdout, st, wait != "")
				if wait != "" && !st.Complete {
					return fmt.Errorf("%d edge(s) did not acknowledge within %s", len(st.Missing), wait)
				}
				return nil
			},
		}
		f := sub.Flags()
		f.StringVar(&api, "api", "", "purge API base URL (default $DUET_PURGE_API or http://127.0.0.1:8090)")
		f.StringVar(&token, "token", "", "bearer token (default $DUET_PURGE_TOKEN)")
		f.StringVar(&wait, "wait", "", "wait this long (e.g. 5s) for every edge's acknowledgement (default: do not wait)")
		f.StringVar(&id, "id", "", "idempotency id: the same id is applied once (default: a new id)")
		f.BoolVar(&soft, "soft", false, "mark stale (revalidate next time) instead of removing")
		cmd.AddCommand(sub)
	}
	cmd.AddCommand(purgeServeCommand(logger, environ))
	return cmd
}

func printStatus(w io.Writer, st purge.Status, waited bool) {
	fmt.Fprintf(w, "purge %s accepted in %s at %s (stream sequence %d)\n", st.ID, st.Region, st.Accepted.Format(time.RFC3339Nano), st.Sequence)
	if !waited && len(st.Acks) == 0 {
		fmt.Fprintln(w, "edges apply it within milliseconds; add --wait 5s to see each one")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EDGE\tREGION\tAPPLIED\tAFTER\tENTRIES")
	for _, a := range st.Acks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f ms\t%d\n", a.Edge, a.Region, a.Applied.Format("15:04:05.000"), a.LatencyMS, a.Entries)
	}
	for _, m := range st.Missing {
		fmt.Fprintf(tw, "%s\t-\tmissing\t-\t-\n", m)
	}
	_ = tw.Flush()
}

func envValue(environ []string, name, def string) string {
	for _, kv := range environ {
		if len(kv) > len(name) && kv[:len(name)] == name && kv[len(name)] == '=' {
			return kv[len(name)+1:]
		}
	}
	return def
}

func purgeServeCommand(logger func() (*slog.Logger, error), environ []string) *cobra.Command {
	cfg := defaultPurgeServeConfig()
	return roleCommand(&cobra.Command{
		Use:   "serve",
		Short: "Run the purge API of one region",
		Long: `Run the purge API of one region. Settings: defaults, then --config (YAML), then
DUET_PURGE_* environment variables, then flags (region, regions, listen, tokens, nats.urls...).`,
	}, "purge", &cfg, logger, environ, func(ctx context.Context, log *slog.Logger) error {
		return runPurgeService(ctx, cfg, log, nil)
	})
}

// runPurgeService serves until ctx ends; ln, when given, replaces cfg.Listen (tests).
func runPurgeService(ctx context.Context, cfg purgeServeConfig, log *slog.Logger, ln net.Listener) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	nc, err := bus.Connect(ctx, cfg.NATS.conn("duet-purge-"+cfg.Region), log)
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Drain() //nolint:errcheck // best effort at exit
	reg := newRegistry()
	svc, err := purge.NewService(ctx, cfg.ServiceConfig, nc, log, reg)
	if err != nil {
		return err
	}
	defer svc.Close()
	if ln == nil {
		var lc net.ListenConfig
		if ln, err = lc.Listen(ctx, "tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
	}
	return svc.Run(ctx, ln)
}
