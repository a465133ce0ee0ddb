package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/origin/upload/uploadcmd"
)

// run builds the command tree and executes it; main only adds signals and the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	root := newRoot(stdout, stderr, environ)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// newRoot is duet's command tree.
func newRoot(stdout, stderr io.Writer, environ []string) *cobra.Command {
	root := &cobra.Command{
		Use:           "duet",
		Short:         "Duet: an active-active edge cache and distribution network for video",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	var logFormat, logLevel string
	root.PersistentFlags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	logger := func() (*slog.Logger, error) { return newLogger(stderr, logFormat, logLevel) }
	root.AddCommand(
		edgeCommand(logger, environ),
		devCommand(logger, stdout, environ),
		purgeCommand(logger, stdout, environ),
		steeringCommand(logger, environ),
		uploadcmd.Command(logger, stdout, environ),
		loadtestCommand(logger, stdout),
		replicateCommand(logger, environ),
		signCommand(environ),
		versionCommand(),
	)
	return root
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// newRegistry is the process's metrics registry, with the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
