package accesslog

import (
	"fmt"
	"io"
	"os"

	"gopkg.in/natefinch/lumberjack.v2"
)

// writerSink gathers whole lines into a buffer and writes it when full or flushed, so that a
// write never splits a line (a rotating file then never holds half of one).
type writerSink struct {
	w     io.Writer
	buf   []byte
	close func() error
}

// NewWriterSink writes lines to w (stdout, say); closing it closes nothing.
func NewWriterSink(w io.Writer) Sink {
	return &writerSink{w: w, buf: make([]byte, 0, 64<<10), close: func() error { return nil }}
}

// NewFileSink appends lines to path, rotating it at maxSizeMB MiB and keeping maxBackups rotated
// files (gopkg.in/natefinch/lumberjack.v2).
func NewFileSink(path string, maxSizeMB, maxBackups int) Sink {
	lj := &lumberjack.Logger{Filename: path, MaxSize: maxSizeMB, MaxBackups: maxBackups}
	return &writerSink{w: lj, buf: make([]byte, 0, 64<<10), close: lj.Close}
}

func (s *writerSink) WriteLine(line []byte) error {
	if len(s.buf)+len(line) > cap(s.buf) {
		if err := s.Flush(); err != nil {
			return err
		}
	}
	if len(line) > cap(s.buf) {
		_, err := s.w.Write(line)
		return err
	}
	s.buf = append(s.buf, line...)
	return nil
}

// WriteLines writes a batch of lines at once, after what WriteLine gathered.
func (s *writerSink) WriteLines(lines []byte) error {
	if err := s.Flush(); err != nil {
		return err
	}
	_, err := s.w.Write(lines)
	return err
}

func (s *writerSink) Flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}

func (s *writerSink) Close() error {
	err := s.Flush()
	if cerr := s.close(); err == nil {
		err = cerr
	}
	return err
}

// Publisher is the part of a NATS connection the NATS sink uses (*nats.Conn has it).
type Publisher interface {
	Publish(subject string, data []byte) error
}

// natsSink publishes each line (without its newline) as a message. Core NATS is at most once:
// a line that the server or a slow subscriber drops is lost, which suits a real-time stream.
type natsSink struct {
	pub     Publisher
	subject string
}

// NewNATSSink publishes lines on subject.
func NewNATSSink(pub Publisher, subject string) Sink { return &natsSink{pub: pub, subject: subject} }

func (s *natsSink) WriteLine(line []byte) error {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	// nats.Conn.Publish copies the data into its write buffer before returning.
	return s.pub.Publish(s.subject, line)
}

func (s *natsSink) Flush() error { return nil }
func (s *natsSink) Close() error { return nil }

// NewSink builds the sink cfg names: "stdout", "file" or "nats" (pub required). It returns nil
// for no sink ("").
func NewSink(cfg Config, pub Publisher) (Sink, error) {
	switch cfg.Sink {
	case "":
		return nil, nil
	case "stdout":
		return NewWriterSink(os.Stdout), nil
	case "file":
		return NewFileSink(cfg.File, cfg.MaxSizeMB, cfg.MaxBackups), nil
	case "nats":
		if pub == nil {
			return nil, fmt.Errorf("%w: sink \"nats\" needs a NATS connection (nats.url)", ErrConfig)
		}
		if cfg.Subject == "" {
			return nil, fmt.Errorf("%w: sink \"nats\" needs a subject", ErrConfig)
		}
		return NewNATSSink(pub, cfg.Subject), nil
	}
	return nil, fmt.Errorf("%w: sink %q is unknown", ErrConfig, cfg.Sink)
}
