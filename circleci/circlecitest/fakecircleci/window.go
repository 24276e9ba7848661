package main

import (
	"flag"
	"strconv"
	"time"

	"github.com/artifact-sync/artifact-sync/circleci/circlecitest"
)

// window spreads the pipelines over days and branches, for trying --since
// and for benchmarks of scheduled runs: -pipelines pipelines over the -days
// days before now (the newest a step before now) on -branches branches in
// turn. Without -days the pipelines come a few minutes apart at the World's
// fixed start, as before.
type window struct {
	days     float64
	branches int
	now      time.Time
}

// windowFlags registers -days and -branches on fs.
func windowFlags(fs *flag.FlagSet) *window {
	win := &window{}
	fs.Float64Var(&win.days, "days", 0, "spread the pipelines evenly over this many days before now, each created_at where it falls (0: a few minutes apart, in March 2026)")
	fs.IntVar(&win.branches, "branches", 1, "put the pipelines on this many branches in turn: main, branch-2, branch-3, ...")
	return win
}

// place sets w's clock for pipeline i of n and returns its branch.
func (win *window) place(w *circlecitest.World, i, n int) string {
	if win.days > 0 {
		if win.now.IsZero() {
			win.now = time.Now()
		}
		span := time.Duration(win.days * float64(24*time.Hour))
		w.SetClock(win.now.Add(-span + span*time.Duration(i)/time.Duration(n)))
	}
	if k := i % max(win.branches, 1); k > 0 {
		return "branch-" + strconv.Itoa(k+1)
	}
	return "main"
}
