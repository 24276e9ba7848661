package circleci

import (
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"
)

// TestPipelinesSince: the listing yields the pipelines created at or after
// since, newest first, takes a page a little out of order as it comes, and
// requests no page after the first one that reaches back past since.
func TestPipelinesSince(t *testing.T) {
	slug := Slug{"gh", "acme", "widgets"}
	day0 := time.Date(2026, time.November, 1, 0, 0, 0, 0, time.UTC)
	// Pipelines 10 … 1, pipeline n created on day n, in pages of two:
	// [10 9] [8 7] [6 5] [4 3] [2 1]; order swaps pipelines (by number)
	// in the listing.
	items := func(swap ...int64) []string {
		order := []int64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
		for i := 0; i+1 < len(swap); i += 2 {
			a, b := slices.Index(order, swap[i]), slices.Index(order, swap[i+1])
			order[a], order[b] = order[b], order[a]
		}
		var out []string
		for _, n := range order {
			created := day0.AddDate(0, 0, int(n)).Add(1500 * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
			out = append(out, fmt.Sprintf(`{"id":"p%d","number":%d,"state":"created","created_at":%q}`, n, n, created))
		}
		return out
	}
	for _, tt := range []struct {
		name  string
		swap  []int64
		since time.Time
		want  []int64
		pages int32
	}{
		{"the window ends inside a page", nil, day0.AddDate(0, 0, 6), []int64{10, 9, 8, 7, 6}, 3},
		{"at created_at is inside", nil, day0.AddDate(0, 0, 7).Add(1500 * time.Millisecond), []int64{10, 9, 8, 7}, 3},
		{"the window ends at a page's end", nil, day0.AddDate(0, 0, 7).Add(2 * time.Second), []int64{10, 9, 8}, 2},
		{"disorder within a page", []int64{6, 5}, day0.AddDate(0, 0, 6), []int64{10, 9, 8, 7, 6}, 3},
		{"disorder: the older first", []int64{8, 7}, day0.AddDate(0, 0, 8), []int64{10, 9, 8}, 2},
		{"everything", nil, day0, []int64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 5},
		{"nothing", nil, day0.AddDate(0, 0, 11), nil, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, calls := pagedServer(t, "project/gh/acme/widgets/pipeline", url.Values{}, items(tt.swap...))
			var got []int64
			for _, p := range collect(t, c.PipelinesSince(t.Context(), slug, "", tt.since)) {
				got = append(got, p.Number)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("pipelines %v, want %v", got, tt.want)
			}
			if n := calls.Load(); n != tt.pages {
				t.Errorf("%d pages requested, want %d", n, tt.pages)
			}
		})
	}
	t.Run("on a branch", func(t *testing.T) {
		c, calls := pagedServer(t, "project/gh/acme/widgets/pipeline", url.Values{"branch": {"release/1.x"}}, items())
		got := collect(t, c.PipelinesSince(t.Context(), slug, "release/1.x", day0.AddDate(0, 0, 9)))
		// The first page is all in the window: only the second says
		// where it ends.
		if len(got) != 2 || calls.Load() != 2 {
			t.Errorf("%d pipelines in %d pages, want 2 in 2", len(got), calls.Load())
		}
	})
}
