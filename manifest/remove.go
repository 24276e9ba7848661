package manifest

import (
	"context"
	"sync"
)

// removeConcurrency is how many files a compaction removes at once. A run
// leaves a journal per group of records (dozens for a pipeline of a few
// hundred files); removed one after the other they were most of what
// closing a manifest cost on a local disk, and one round trip each on S3.
const removeConcurrency = 8

// removeAll removes names from st, removeConcurrency at a time, and
// returns those it could not remove with their errors, in names' order.
func removeAll(ctx context.Context, st Store, names []string) (failed []string, errs []error) {
	results := make([]error, len(names))
	sem := make(chan struct{}, removeConcurrency)
	var wg sync.WaitGroup
	for i, name := range names {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = st.Remove(ctx, name)
		}()
	}
	wg.Wait()
	for i, err := range results {
		if err != nil {
			failed = append(failed, names[i])
			errs = append(errs, err)
		}
	}
	return failed, errs
}
