package acme

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapLogger hands certmagic (which logs with zap) a logger that writes to log.
func zapLogger(log *slog.Logger) *zap.Logger { return zap.New(slogCore{h: log.Handler()}) }

// slogCore is a zapcore.Core over an slog.Handler.
type slogCore struct{ h slog.Handler }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// attrs turns zap fields into slog attributes.
func attrs(fs []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fs {
		f.AddTo(enc)
	}
	out := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, slog.Any(k, v))
	}
	return out
}

// zap's Core has no context; its entries carry none.
var noCtx = context.Background()

func (c slogCore) Enabled(l zapcore.Level) bool { return c.h.Enabled(noCtx, slogLevel(l)) }

func (c slogCore) With(fs []zapcore.Field) zapcore.Core { return slogCore{h: c.h.WithAttrs(attrs(fs))} }

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(attrs(fs)...)
	return c.h.Handle(noCtx, r)
}

func (c slogCore) Sync() error { return nil }
