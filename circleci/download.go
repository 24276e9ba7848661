package circleci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// Download starts a GET of an artifact URL the API returned and returns the
// response with its body unread; the caller must close it.
//
// The token is sent to rawURL's origin and dropped for good as soon as a
// redirect leaves it (artifact hosts redirect to short-lived signed URLs on
// cloud storage). When offset > 0 it asks for the bytes from offset on with
// Range, and with If-Range when ifRange (an ETag or date) is not empty; the
// caller must check for 206 and the Content-Range, since a server may answer
// 200 with the whole file. The body is not decompressed.
//
// A non-2xx answer fails with an [*Error] (the body is closed). Download does
// not retry a failed request, but rides out an outage of the host: when a
// host that answered before refuses or drops every request, Download waits
// for it and asks again, for up to RetryPolicy.MaxElapsed from the start of
// the outage (reported once through Config.OnTrouble), then fails with an
// error that is not retryable. The idle timeout applies to reading the
// body, and errors from reading it are classified by [IsRetryable].
func (c *Client) Download(ctx context.Context, rawURL string, offset int64, ifRange string) (*http.Response, error) {
	if offset < 0 {
		return nil, fmt.Errorf("circleci: negative download offset %d", offset)
	}
	var rng string
	if offset > 0 {
		rng = "bytes=" + strconv.FormatInt(offset, 10) + "-"
	}
	return c.download(ctx, rawURL, rng, ifRange)
}

// DownloadRange is Download for the bytes first to last, inclusive, so one
// artifact can be fetched over several connections at once. The caller must
// check for 206 and the Content-Range.
func (c *Client) DownloadRange(ctx context.Context, rawURL string, first, last int64, ifRange string) (*http.Response, error) {
	if first < 0 || last < first {
		return nil, fmt.Errorf("circleci: bad download range %d-%d", first, last)
	}
	return c.download(ctx, rawURL, "bytes="+strconv.FormatInt(first, 10)+"-"+strconv.FormatInt(last, 10), ifRange)
}

func (c *Client) download(ctx context.Context, rawURL, rng, ifRange string) (*http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("circleci: artifact URL is not an absolute http(s) URL")
	}
	if err := checkInsecure(u); err != nil {
		return nil, err
	}
	var resp *http.Response
	err = c.rideOut(ctx, func() (host string, err error) {
		resp, host, err = c.downloadOnce(ctx, u, rng, ifRange)
		return host, err
	})
	return resp, err
}

// downloadOnce sends one request of download and returns its answer and
// the host that answered or failed: the last hop's, after redirects.
func (c *Client) downloadOnce(ctx context.Context, u *url.URL, rng, ifRange string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(withTokenScope(ctx, u), http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, u.Host, c.scrub(err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	// Exact bytes: a transparently decompressed body would break Range
	// offsets and Content-Length checks.
	req.Header.Set("Accept-Encoding", "identity")
	if rng != "" {
		req.Header.Set("Range", rng)
		if ifRange != "" {
			req.Header.Set("If-Range", ifRange)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		err = c.scrub(err)
		host := u.Host
		var ue *url.Error
		if errors.As(err, &ue) {
			if hop, perr := url.Parse(ue.URL); perr == nil && hop.Host != "" {
				host = hop.Host // the hop that failed, after redirects
			}
		}
		return nil, host, downloadNetError(host, err)
	}
	host := resp.Request.URL.Host
	if err := checkResponse(resp, c.token); err != nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return nil, host, err
	}
	resp.Body = &downloadBody{ReadCloser: resp.Body, host: host}
	return resp, host, nil
}

// downloadNetError says which host a download failed at and how, for an
// error below HTTP; other errors are returned as they are. What to do is the
// caller's to say: it retries the transfer.
func downloadNetError(host string, err error) error {
	if cause := netCause(err); cause != "" {
		return &netError{subject: "download from " + host, cause: cause, err: err}
	}
	return err
}

// downloadBody names the host in the errors of reading an artifact's body.
type downloadBody struct {
	io.ReadCloser
	host string
}

func (b *downloadBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = downloadNetError(b.host, err)
	}
	return n, err
}
