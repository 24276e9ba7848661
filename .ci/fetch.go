// Command fetch is .ci/bench's measured floor for the pipeline scenarios:
// the least a client can do with the same artifact URLs: -j keep-alive
// connections, one GET after another on each, bodies read and discarded, no
// listing, no files, no manifest. What it takes over the scenario's
// theoretical floor is the fake's and the machine's own cost per request,
// which no client avoids.
//
// Usage: go run .ci/fetch.go -j N URLS-FILE (CIRCLE_TOKEN set)
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
)

func main() {
	conc := flag.Int("j", 16, "connections")
	flag.Parse()
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch:", err)
		os.Exit(2)
	}
	var urls []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if u := strings.TrimSpace(sc.Text()); strings.HasPrefix(u, "http") {
			urls = append(urls, u)
		}
	}
	tok := os.Getenv("CIRCLE_TOKEN")
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	work := make(chan string)
	var wg sync.WaitGroup
	var failed sync.Once
	code := 0
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				req, _ := http.NewRequest(http.MethodGet, u, nil)
				req.Header.Set("Circle-Token", tok)
				resp, err := c.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s: %s", u, resp.Status)
					}
				}
				if err != nil {
					failed.Do(func() { fmt.Fprintln(os.Stderr, "fetch:", err); code = 1 })
				}
			}
		}()
	}
	for _, u := range urls {
		work <- u
	}
	close(work)
	wg.Wait()
	os.Exit(code)
}
