// Command domicile keeps every user's personal data in the region the law of
// the user's country requires, and moves it there, live, when the policy or
// the user's country changes. See README.md and docs/.
//
// Each subcommand lives in its own file as a method of Main returning its
// *cobra.Command; rootCommand lists them.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func main() {
	tuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	m := &Main{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin}
	err := m.Run(ctx, os.Args[1:])
	stop()
	os.Exit(ExitCode(err))
}

// Main is the domicile program, runnable from tests without a shell. The
// zero value writes nowhere; main sets the standard streams.
type Main struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	Now            func() time.Time // default time.Now
	Logger         *slog.Logger     // default: text to Stderr at --log-level

	// Set by Run from the global flags, for the commands to read.
	ConfigPath string // --config
	JSON       bool   // --json: report as one JSON object on Stdout
	logLevel   string
}

// Run runs the command line args (without the program name). An error is
// also printed to Stderr as "domicile: <message>"; ExitCode tells the exit
// status it calls for.
func (m *Main) Run(ctx context.Context, args []string) error {
	if m.Stdout == nil {
		m.Stdout = io.Discard
	}
	if m.Stderr == nil {
		m.Stderr = io.Discard
	}
	if m.Stdin == nil {
		m.Stdin = strings.NewReader("")
	}
	if m.Now == nil {
		m.Now = time.Now
	}
	root := m.rootCommand()
	root.SetArgs(args)
	root.SetIn(m.Stdin)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)

	// Whatever fails before a command's RunE starts (flags, arguments) is
	// the user's to fix: a usage error.
	var started bool
	prepare(root, func() error {
		started = true
		if m.Logger == nil {
			var level slog.Level
			if err := level.UnmarshalText([]byte(m.logLevel)); err != nil {
				return usageErrorf("--log-level %q: want debug, info, warn or error", m.logLevel)
			}
			m.Logger = slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: level}))
		}
		return nil
	})
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return nil
	}
	if !started {
		if _, ok := errors.AsType[*UsageError](err); !ok {
			err = &UsageError{Err: err}
		}
	}
	fmt.Fprintf(m.Stderr, "domicile: %v\n", err)
	if _, ok := errors.AsType[*UsageError](err); ok && cmd != nil {
		fmt.Fprintf(m.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return err
}

// rootCommand builds the command tree.
func (m *Main) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "domicile",
		Short: "Keep personal data where the law says, and move it there live",
		Long: `domicile places every user's personal data in the region the law of the
user's country requires, moves it there live when the policy or the user's
country changes, and proves that nothing was left behind.

Start with 'domicile init', or run the reference scenario with 'domicile demo'.`,
		Args:                       cobra.ArbitraryArgs,
		SilenceErrors:              true,
		SuggestionsMinimumDistance: 2,
		SilenceUsage:               true,
		CompletionOptions:          cobra.CompletionOptions{HiddenDefaultCmd: true},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				msg := fmt.Sprintf("unknown command %q", args[0])
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += fmt.Sprintf("; did you mean %q?", s[0])
				}
				return &UsageError{Err: errors.New(msg)}
			}
			return cmd.Help()
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&m.ConfigPath, "config", defaultConfigPath, "configuration file")
	pf.BoolVar(&m.JSON, "json", false, "report as one JSON object on stdout")
	pf.StringVar(&m.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })

	root.AddCommand(
		// One file per command, each a method returning its *cobra.Command.
		m.initCommand(),
		m.installCommand(),
		m.discoverCommand(),
		m.planCommand(),
		m.migrateCommand(),
		m.purgeCommand(),
		m.rollbackCommand(),
		m.verifyCommand(),
		m.whereCommand(),
		m.consentCommand(),
		m.approveCommand(),
		m.approvalsCommand(),
		m.statusCommand(),
		m.eraseCommand(),
		m.auditCommand(),
		m.attestCommand(),
		m.reportCommand(),
		m.serveCommand(),
		m.workerCommand(),
		m.demoCommand(),
		m.benchCommand(),
		m.versionCommand(),
	)
	return root
}

// prepare readies every command below root: a command that declares no
// positional arguments takes none, and start runs as its RunE begins, once
// the flags and arguments have been accepted.
func prepare(c *cobra.Command, start func() error) {
	for _, sub := range c.Commands() {
		prepare(sub, start)
	}
	if c.Args == nil && !c.HasSubCommands() {
		c.Args = cobra.NoArgs
	}
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if err := start(); err != nil {
				return err
			}
			return run(cmd, args)
		}
	}
}

// UsageError is a mistake in the command line; the program exits with
// status 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// usageErrorf returns a *UsageError; commands use it for flag values they
// refuse.
func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode returns the exit status for an error Run returned: 0 for nil, 2
// for a usage error, 1 for any other.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	if _, ok := errors.AsType[*UsageError](err); ok {
		return 2
	}
	return 1
}

// defaultConfigPath is where --config points unless given.
const defaultConfigPath = "./domicile.yaml"

// loadConfig reads the configuration --config names.
func (m *Main) loadConfig() (*Config, error) { return LoadConfig(m.ConfigPath) }

// report prints v as one JSON object on Stdout under --json, or calls text
// to print it for people.
func (m *Main) report(v any, text func(w io.Writer) error) error {
	if m.JSON {
		enc := json.NewEncoder(m.Stdout)
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	return text(m.Stdout)
}
