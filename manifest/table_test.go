package manifest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestSlotRoundTrip: an entry or a removal comes out of its slot as it
// went in, whatever its key, headers and times.
func TestSlotRoundTrip(t *testing.T) {
	base := testEntry("slots", 1)
	for name, e := range map[string]Entry{
		"plain": base,
		"key ends with path": func() Entry {
			e := base
			e.Key = "12/0/" + e.Path
			return e
		}(),
		"key is the path": func() Entry { e := base; e.Key = e.Path; return e }(),
		"key elsewhere":   func() Entry { e := base; e.Key = "somewhere/else"; return e }(),
		"no key":          func() Entry { e := base; e.Key = ""; return e }(),
		"no sum":          func() Entry { e := base; e.SHA256 = ""; return e }(),
		"headers": func() Entry {
			e := base
			e.ETag, e.LastModified = `"0x8DCB2A1F3E7C5A0"`, "Thu, 02 Jan 2025 03:04:05 GMT"
			return e
		}(),
		"far times": func() Entry {
			e := base
			e.Completed = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
			return e
		}(),
		"year 0": func() Entry {
			e := base
			e.Completed = time.Date(0, 1, 1, 0, 0, 0, 1, time.UTC)
			return e
		}(),
		"negative numbers": func() Entry {
			e := base
			e.JobNumber, e.NodeIndex = -1<<63, -7
			return e
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			tb := newTable()
			i := tb.add(newSlot(&e, time.Time{}), e.Project, e.Run)
			if got := tb.view().entry(i); got != e {
				t.Errorf("got  %+v\nwant %+v", got, e)
			}
			r := tb.add(newSlot(&e, testTime), e.Project, "remover")
			got, _ := tb.view().recordSum(r)
			want := record{Entry: Entry{ID: e.ID, Run: "remover"}, Removed: testTime}
			if got != want {
				t.Errorf("removal: got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestTableMatchesAMap sets and removes entries at random, many of them on
// the same few paths, and checks the table against a map after each step.
func TestTableMatchesAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tb := newTable()
	model := map[ID]uint32{}
	id := func() ID {
		n := rng.IntN(3000)
		return ID{Project: fmt.Sprint("gh/org/repo", n%2), JobNumber: int64(n % 50), NodeIndex: int64(n % 3), Path: fmt.Sprint("p/", n%400)}
	}
	for step := range 20000 {
		x := id()
		if rng.IntN(3) == 0 {
			_, had := model[x]
			if got := tb.remove(x); got != had {
				t.Fatalf("step %d: remove(%v) = %v, want %v", step, x, got, had)
			}
			delete(model, x)
		} else {
			e := Entry{ID: x, Key: x.Path, Size: int64(step), Completed: testTime, Run: "r"}
			i := tb.add(newSlot(&e, time.Time{}), x.Project, e.Run)
			tb.set(i)
			model[x] = i
		}
		if tb.live != len(model) {
			t.Fatalf("step %d: %d live, want %d", step, tb.live, len(model))
		}
		if step%1000 == 0 || step > 19900 {
			for x, i := range model {
				s, ok := tb.lookup(x)
				if !ok || s != tb.slot(i) {
					t.Fatalf("step %d: lookup(%v) = %v, %v; want slot %d", step, x, s, ok, i)
				}
			}
			got := tb.entries()
			var want []uint32
			for _, i := range model {
				want = append(want, i)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: entries differ from the model", step)
			}
		}
	}
	for range 1000 {
		x := id()
		_, want := model[x]
		if _, got := tb.lookup(x); got != want {
			t.Fatalf("lookup(%v) = %v, want %v", x, got, want)
		}
	}
}
