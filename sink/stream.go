package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
)

// checkedReader passes a Put's stream through, hashing it, stopping when
// ctx is cancelled and enforcing the declared size: reading past size is
// ErrLongStream, EOF before it ErrShortStream.
type checkedReader struct {
	ctx  context.Context
	r    io.Reader
	size int64 // whole object; -1 if unknown
	n    int64 // bytes delivered so far, counting any kept prefix
	h    hash.Hash
	err  error // the first error Read returned other than io.EOF
}

func newCheckedReader(ctx context.Context, r io.Reader, size, already int64, h hash.Hash) *checkedReader {
	if h == nil {
		h = sha256.New()
	}
	return &checkedReader{ctx: ctx, r: r, size: size, n: already, h: h}
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.read(p)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *checkedReader) read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if c.size >= 0 && c.size-c.n < int64(len(p))-1 {
		// Never read more than one byte past the declared end (written so
		// that no declared size, however large, overflows).
		p = p[:c.size-c.n+1]
	}
	n, err := c.r.Read(p)
	if c.size >= 0 && c.n+int64(n) > c.size {
		n = int(c.size - c.n)
		c.h.Write(p[:n])
		c.n += int64(n)
		return n, fmt.Errorf("%w (%d bytes)", ErrLongStream, c.size)
	}
	c.h.Write(p[:n])
	c.n += int64(n)
	if err == io.EOF && c.size >= 0 && c.n < c.size {
		return n, fmt.Errorf("%w: got %d of %d bytes", ErrShortStream, c.n, c.size)
	}
	return n, err
}

func (c *checkedReader) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }
