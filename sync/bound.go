package sync

import (
	"fmt"
	"io"
)

// tooLargeError fails an artifact whose download declared no length and
// went on past --max-artifact-size: retrying would only fetch it again.
type tooLargeError struct{ limit int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("the download declared no length and went on past --max-artifact-size (%s): stopped; raise --max-artifact-size if the artifact really is that large", HumanBytes(e.limit))
}

// capReader holds a body of unknown length to limit bytes, the bound a
// declared Content-Length is held to: it passes on the bytes within the
// limit and fails with a *tooLargeError as soon as one more arrives, so a
// host that streams without end fills neither the disk nor a multipart
// upload.
type capReader struct {
	r     io.Reader
	left  int64 // bytes that may still arrive
	limit int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	if int64(n) > c.left {
		n = int(c.left)
		c.left = 0
		return n, &tooLargeError{c.limit}
	}
	c.left -= int64(n)
	return n, err
}
