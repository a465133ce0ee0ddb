package main

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/duetcdn/duet/internal/config"
)

// roleCommand builds the command of a long-running role: its settings come from cfg's defaults,
// then --config (YAML), then DUET_<ROLE>_* variables, then flags (one per setting), and run
// starts the role with them.
func roleCommand(cmd *cobra.Command, role string, cfg any, logger func() (*slog.Logger, error), environ []string,
	run func(ctx context.Context, log *slog.Logger) error,
) *cobra.Command {
	var file string
	cmd.Args = cobra.NoArgs
	ld := config.NewLoader(role, cfg, cmd.Flags())
	cmd.Flags().StringVarP(&file, "config", "c", "", "YAML config file (default: none; settings come from the defaults, DUET_* variables and flags)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := ld.Load(file, environ); err != nil {
			return err
		}
		log, err := logger()
		if err != nil {
			return err
		}
		return run(cmd.Context(), log)
	}
	return cmd
}
