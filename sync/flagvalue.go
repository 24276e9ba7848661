package sync

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
)

// Duration is a flag value (a pflag.Value) that sets a time.Duration and
// is shown as it was typed ("60s", not "1m0s").
type Duration struct {
	d    *time.Duration
	text string
}

// NewDuration is a Duration that sets *d, with the default def.
func NewDuration(d *time.Duration, def string) *Duration {
	v := &Duration{d: d}
	if err := v.Set(def); err != nil {
		panic(err)
	}
	return v
}

func (v *Duration) String() string { return v.text }
func (v *Duration) Type() string   { return "duration" }

func (v *Duration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("give a duration such as 60s or 5m")
	}
	*v.d, v.text = d, s
	return nil
}

// Size is a flag value (a pflag.Value) that sets a byte count given with an
// optional binary suffix (512, 64K, 64M, 1.5G, 64MiB; K, M and G mean 1024,
// 1024² and 1024³, as the flags' help says) and is shown as it was typed. It is read by
// docker/go-units' RAMInBytes, the parser Docker and containerd use for
// their --memory and --shm-size flags, which reads exactly these forms.
type Size struct {
	n    *int64
	text string
}

// NewSize is a Size that sets *n, with the default def.
func NewSize(n *int64, def string) *Size {
	v := &Size{n: n}
	if err := v.Set(def); err != nil {
		panic(err)
	}
	return v
}

func (v *Size) String() string { return v.text }
func (v *Size) Type() string   { return "size" }

func (v *Size) Set(s string) error {
	n, err := units.RAMInBytes(strings.TrimSpace(s))
	if err != nil || n <= 0 {
		return fmt.Errorf("give a positive size such as 64M (K, M, G: binary units)")
	}
	*v.n, v.text = n, s
	return nil
}

// Count is a flag value (a pflag.Value) that sets a count of 1 or more.
type Count struct{ n *int }

// NewCount is a Count that sets *n, with the default def.
func NewCount(n *int, def int) *Count {
	*n = def
	return &Count{n}
}

func (v *Count) String() string { return strconv.Itoa(*v.n) }
func (v *Count) Type() string   { return "int" }

func (v *Count) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 {
		return fmt.Errorf("give a whole number, 1 or more")
	}
	*v.n = n
	return nil
}

// Choice is a flag value (a pflag.Value) that sets a string to one of a
// few words.
type Choice struct {
	s     *string
	words []string
}

// NewChoice is a Choice among words that sets *s, with the first word as
// the default.
func NewChoice(s *string, words ...string) *Choice {
	*s = words[0]
	return &Choice{s, words}
}

func (v *Choice) String() string { return *v.s }
func (v *Choice) Type() string   { return "string" }

func (v *Choice) Set(s string) error {
	if !slices.Contains(v.words, s) {
		return fmt.Errorf("give %s or %s", strings.Join(v.words[:len(v.words)-1], ", "), v.words[len(v.words)-1])
	}
	*v.s = s
	return nil
}
