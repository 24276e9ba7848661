package sync

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	stdsync "sync"

	"golang.org/x/term"
)

// Screen is where people read the tool's messages: stderr, usually a
// terminal. On a terminal it keeps one status line (the progress bar or the
// resolving spinner) at the bottom and prints log lines above it (clear the
// line, print, redraw), so a message never runs through the bar.
type Screen struct {
	mu     stdsync.Mutex
	w      io.Writer
	fd     int  // for the width; -1 when w is not a terminal
	color  bool // ANSI colours for warnings and errors
	status string
}

// NewScreen writes to w. When w is a terminal the screen can draw a status
// line; colour is used when color is true (see UseColor).
func NewScreen(w io.Writer, color bool) *Screen {
	s := &Screen{w: w, fd: -1, color: color}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		s.fd = int(f.Fd())
	}
	return s
}

// IsTerminal reports whether the screen is a terminal, where a progress bar
// can be drawn.
func (s *Screen) IsTerminal() bool { return s.fd >= 0 }

// UseColor reports whether messages on w may be coloured: w is a terminal,
// NO_COLOR (https://no-color.org) is unset or empty, and TERM is not "dumb".
func UseColor(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"
}

// width is the terminal's width in columns, 80 if unknown.
func (s *Screen) width() int {
	if s.fd >= 0 {
		if w, _, err := term.GetSize(s.fd); err == nil && w > 0 {
			return w
		}
	}
	return 80
}

// Println prints one line above the status line.
func (s *Screen) Println(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != "" {
		io.WriteString(s.w, "\r\x1b[K"+line+"\n"+s.status)
		return
	}
	io.WriteString(s.w, line+"\n")
}

// setStatus draws line as the status line, in place of the previous one.
// It does nothing unless the screen is a terminal.
func (s *Screen) setStatus(line string) {
	if s.fd < 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = line
	io.WriteString(s.w, "\r\x1b[K"+line)
}

// clearStatus removes the status line, leaving the cursor at the start of
// an empty line.
func (s *Screen) clearStatus() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != "" {
		io.WriteString(s.w, "\r\x1b[K")
		s.status = ""
	}
}

// paint wraps s in an ANSI colour when the screen uses colour.
func (s *Screen) paint(code, text string) string {
	if !s.color {
		return text
	}
	return "\x1b[" + code + "m" + text + "\x1b[0m"
}

// NewTextHandler logs for people: one short line per message, "warning:"
// and "error:" marked (in colour where the screen allows), details after
// the message in plain words, and no timestamps or key=value noise. Values
// go through Printable.
func NewTextHandler(s *Screen, level slog.Leveler) slog.Handler {
	return &textHandler{screen: s, level: level}
}

type textHandler struct {
	screen *Screen
	level  slog.Leveler
	attrs  []slog.Attr
}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool {
	min := slog.LevelInfo
	if h.level != nil {
		min = h.level.Level()
	}
	return l >= min
}

func (h *textHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString(h.screen.paint("1;31", "error:") + " ")
	case r.Level >= slog.LevelWarn:
		b.WriteString(h.screen.paint("33", "warning:") + " ")
	case r.Level < slog.LevelInfo:
		b.WriteString(h.screen.paint("2", "debug:") + " ")
	}
	b.WriteString(Printable(r.Message))
	attrs := slices.Clone(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	var details []string
	var errText string
	for _, a := range attrs {
		v := Printable(a.Value.Resolve().String())
		if a.Key == "error" {
			errText = v
			continue
		}
		details = append(details, strings.ReplaceAll(a.Key, "_", " ")+" "+v)
	}
	if len(details) > 0 {
		b.WriteString(" (" + strings.Join(details, ", ") + ")")
	}
	if errText != "" {
		b.WriteString(": " + errText)
	}
	h.screen.Println(b.String())
	return nil
}

func (h *textHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &textHandler{screen: h.screen, level: h.level, attrs: append(slices.Clone(h.attrs), attrs...)}
}

func (h *textHandler) WithGroup(string) slog.Handler { return h }

// NewLogger returns the logger for stderr in the given format: "text"
// (NewTextHandler), "json" (slog's JSON lines) or "" for the default, which
// is text on a terminal and slog's key=value lines otherwise (for log
// collectors and CI logs). key=value and JSON lines are written through the
// screen too, so they never run through a bar.
func NewLogger(s *Screen, format string, level slog.Leveler) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "":
		if s.IsTerminal() {
			return slog.New(NewTextHandler(s, level)), nil
		}
		return slog.New(slog.NewTextHandler(lineWriter{s}, opts)), nil
	case "text":
		return slog.New(NewTextHandler(s, level)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(lineWriter{s}, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: give text or json", format)
}

// lineWriter hands the lines a handler writes to the screen.
type lineWriter struct{ s *Screen }

func (w lineWriter) Write(p []byte) (int, error) {
	w.s.Println(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
