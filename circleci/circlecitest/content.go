package circlecitest

import (
	"encoding/binary"
	"errors"
	"io"
)

// contentReader generates an artifact's bytes: word i (bytes 8i…8i+7) is
// splitmix64 of key+i·φ, so any offset is reachable without generating what
// precedes it, which Range requests need.
type contentReader struct {
	key       uint64
	size, off int64
}

func (c *contentReader) Read(p []byte) (int, error) {
	if c.off >= c.size {
		return 0, io.EOF
	}
	if rem := c.size - c.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	fillContent(c.key, c.off, p)
	c.off += int64(len(p))
	return len(p), nil
}

func (c *contentReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += c.off
	case io.SeekEnd:
		offset += c.size
	default:
		return 0, errors.New("circlecitest: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("circlecitest: negative position")
	}
	c.off = offset
	return offset, nil
}

func fillContent(key uint64, off int64, p []byte) {
	i := uint64(off / 8)
	skip := off % 8
	var b [8]byte
	for len(p) > 0 {
		binary.LittleEndian.PutUint64(b[:], splitmix64(key+i*0x9e3779b97f4a7c15))
		n := copy(p, b[skip:])
		p = p[n:]
		skip = 0
		i++
	}
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
