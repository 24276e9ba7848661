package sync

import (
	"errors"
	"fmt"
	"net/http"
)

// checkResume proves that resp, the answer to a request for bytes first to
// last (inclusive) of an artifact of total bytes sent with If-Range
// validator, continues the bytes kept with validator: a 206 whose
// Content-Range names exactly that range and total, whose length agrees,
// and whose validator (read as sourceValidator reads it) is the kept one.
// Every resumed or ranged answer goes through it, single stream and ranged
// alike.
//
// The validator is compared, not trusted to If-Range: a server or proxy
// that ignores If-Range answers 206 for whatever version it holds now, and
// a Content-Range of the same total cannot tell two versions of one size
// apart. Bytes kept without a validator prove nothing, so they are never
// resumed. The error says what did not match, for the caller to drop the
// kept bytes and start over.
func checkResume(resp *http.Response, first, last, total int64, validator string) error {
	asked := fmt.Sprintf("asked for bytes %d-%d of %d", first, last, total)
	if resp.StatusCode != http.StatusPartialContent {
		return fmt.Errorf("%s, got %d %s", asked, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	crh := resp.Header.Get("Content-Range")
	cr, ok := parseContentRange(crh)
	if !ok || cr.first != first || cr.last != last || cr.total != total {
		return fmt.Errorf("%s, got Content-Range %q", asked, crh)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != cr.last-cr.first+1 {
		return fmt.Errorf("%s, got Content-Range %q with Content-Length %d", asked, crh, resp.ContentLength)
	}
	if validator == "" {
		return errors.New(asked + " of bytes kept without an ETag or Last-Modified, which cannot be proven to be the same version")
	}
	if got := sourceValidator(resp); got != validator {
		return fmt.Errorf("%s of version %s, got version %q: the server ignored If-Range, and the artifact changed", asked, validator, got)
	}
	return nil
}
