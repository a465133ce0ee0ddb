package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/devcluster"
	"github.com/duetcdn/duet/loadtest"
	"github.com/duetcdn/duet/loadtest/report"
)

func loadtestCommand(logger func() (*slog.Logger, error), stdout io.Writer) *cobra.Command {
	cfg := loadtest.DefaultConfig()
	var reportPath, jsonPath, devDir string
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Drive load at `duet dev` and write an HTML report",
		Long: `Drive load at a running ` + "`duet dev`" + ` (start it with ` + "`make run`" + `) through its control API, and
report throughput, latency percentiles (HdrHistogram, corrected for coordinated omission), errors,
hit ratio and origin offload, with an HTML report whose charts mark the events.

Scenarios: ` + strings.Join(loadtest.Scenarios(), ", ") + `
  zipf         a catalogue with Zipf popularity at --rate requests/s (vegeta)
  flash-crowd  --viewers viewers start one new, cold stream within --ramp
  failover     viewers that follow steering while an edge, then its region, stop and start
  purge-storm  viewers play while purges are sent at --purge-rate

Only loopback targets receive load unless --allow-remote is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logger()
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			if cfg.ControlToken == "" {
				// Without duet dev's token file the control API's own 401 says where the token is;
				// an unreachable control URL says so first.
				cfg.ControlToken, _ = devcluster.ControlToken(devDir)
			}
			sum, runErr := loadtest.Run(cmd.Context(), cfg, loadtest.Deps{Logger: log})
			if sum == nil {
				return runErr
			}
			if err := report.WriteText(stdout, sum); err != nil {
				return err
			}
			if err := writeReportFile(reportPath, func(w io.Writer) error { return report.WriteHTML(w, sum) }); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "report: %s\n", reportPath)
			if jsonPath != "" {
				if err := writeReportFile(jsonPath, func(w io.Writer) error { return report.WriteJSON(w, sum) }); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "summary: %s\n", jsonPath)
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Control, "control", cfg.Control, "control API URL of the running duet dev cluster")
	f.StringVar(&cfg.ControlToken, "control-token", "", "control API token (default: the one duet dev keeps in --dev-dir)")
	f.StringVar(&devDir, "dev-dir", ".duet", "state directory of the running duet dev, where its control token is kept")
	f.StringVar(&cfg.Scenario, "scenario", cfg.Scenario, "scenario: "+strings.Join(loadtest.Scenarios(), ", "))
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the load runs (at most "+loadtest.MaxDuration.String()+")")
	f.IntVar(&cfg.Rate, "rate", cfg.Rate, "zipf: requests per second")
	f.IntVar(&cfg.Viewers, "viewers", 0, "HLS viewers (default 2000 for flash-crowd, 20 otherwise)")
	f.DurationVar(&cfg.Ramp, "ramp", cfg.Ramp, "flash-crowd: time to start every viewer")
	f.IntVar(&cfg.Objects, "objects", cfg.Objects, "zipf: catalogue size")
	f.Int64Var(&cfg.ObjectSize, "object-size", cfg.ObjectSize, "zipf: bytes per object")
	f.Float64Var(&cfg.ZipfS, "zipf-s", cfg.ZipfS, "zipf: popularity exponent (any s > 0)")
	f.Float64Var(&cfg.PurgeRate, "purge-rate", cfg.PurgeRate, "purge-storm: purges per second")
	f.Float64Var(&cfg.Speed, "speed", cfg.Speed, "viewers play this many times faster than real time")
	f.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "timeout of one request")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the run's random choices")
	f.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow load to non-loopback addresses (only against a cluster you own)")
	f.StringVar(&reportPath, "report", "out/loadtest.html", "HTML report path")
	f.StringVar(&jsonPath, "json", "", "JSON summary path (default: none)")
	return cmd
}

// writeReportFile creates path (and its folder) and writes it with fn.
func writeReportFile(path string, fn func(io.Writer) error) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
