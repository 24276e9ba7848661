package sync

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// minMemoryLimit is the least soft memory limit LimitMemory sets.
const minMemoryLimit = 128 << 20

// LimitMemory sets a soft memory limit (runtime/debug.SetMemoryLimit) unless
// GOMEMLIMIT sets one already, so that the heap of a large run stays near
// what is live instead of growing to twice that (GOGC=100) before each
// collection. After every collection the limit becomes memoryLimit of what
// the collection found live: never less than half as much again above it,
// so the collector never runs back to back however large the run; and never
// less than minMemoryLimit, so a run that holds little collects no more
// often than without a limit.
func LimitMemory(getenv func(string) string) {
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var adjust func(struct{})
	adjust = func(struct{}) {
		metrics.Read(live)
		debug.SetMemoryLimit(memoryLimit(live[0].Value.Uint64()))
		// Called again after the next collection, which finds the new
		// object unreachable.
		runtime.AddCleanup(&gcCycle{}, adjust, struct{}{})
	}
	adjust(struct{}{})
}

// gcCycle is an object made only to be collected. Its pointer keeps it out
// of the tiny allocator, whose objects may outlive the collection.
type gcCycle struct{ _ *byte }

// memoryLimit is the soft memory limit for a heap of live bytes.
func memoryLimit(live uint64) int64 {
	return max(minMemoryLimit, int64(min(live, math.MaxInt64/2)/2*3))
}
