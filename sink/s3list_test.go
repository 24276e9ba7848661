package sink_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/artifact-sync/artifact-sync/sink"
	"github.com/artifact-sync/artifact-sync/sink/sinktest"
)

// canned answers every request with 200 and its body, as an S3 server
// answers ListObjectsV2.
type canned struct {
	mu   stdsync.Mutex
	body []byte
}

func (c *canned) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	body := c.body
	c.mu.Unlock()
	return &http.Response{StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/xml"}},
		ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
}

func (c *canned) set(body []byte) {
	c.mu.Lock()
	c.body = body
	c.mu.Unlock()
}

// sdkPage decodes body as a ListObjectsV2 answer with the AWS SDK alone:
// the reference parseListObjectsV2 must agree with.
func sdkPage(body []byte) (sink.ListedPage, error) {
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://s3.test"), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
		HTTPClient:  &http.Client{Transport: &canned{body: body}}, Retryer: aws.NopRetryer{}})
	out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("b")})
	if err != nil {
		return sink.ListedPage{}, err
	}
	p := sink.ListedPage{Truncated: aws.ToBool(out.IsTruncated), Next: aws.ToString(out.NextContinuationToken)}
	for _, o := range out.Contents {
		p.Keys = append(p.Keys, aws.ToString(o.Key))
		p.Sizes = append(p.Sizes, aws.ToInt64(o.Size))
		p.Times = append(p.Times, aws.ToTime(o.LastModified))
	}
	return p, nil
}

// cannedSink is an S3 sink whose requests c answers.
func cannedSink(t testing.TB, c *canned) *sink.S3 {
	t.Helper()
	t.Setenv("AWS_CA_BUNDLE", "") // the SDK cannot add it to a client of ours
	s, err := sink.NewS3(context.Background(), sink.S3Config{Bucket: "b", Endpoint: "http://s3.test", PathStyle: true,
		Region: "us-east-1", AccessKeyID: "k", SecretAccessKey: "s", HTTPClient: &http.Client{Transport: c}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func samePage(a, b sink.ListedPage) bool {
	return slices.Equal(a.Keys, b.Keys) && slices.Equal(a.Sizes, b.Sizes) && a.Truncated == b.Truncated && a.Next == b.Next &&
		slices.EqualFunc(a.Times, b.Times, time.Time.Equal)
}

const listHead = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`

// object is one <Contents> as AWS writes it.
func object(escapedKey string, size int) string {
	return `<Contents><Key>` + escapedKey + `</Key><LastModified>2026-11-30T07:59:14.000Z</LastModified>` +
		`<ETag>&quot;4dbbfcde0363d60be8ef048e9257d108&quot;</ETag><ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>` +
		`<ChecksumType>FULL_OBJECT</ChecksumType><Size>` + strconv.Itoa(size) + `</Size><StorageClass>STANDARD</StorageClass></Contents>`
}

// listBodies are answers of the shape servers send (fast: parsed here)
// and others the SDK decodes itself.
var listBodies = []struct {
	name string
	body string
	fast bool
	keys []string
}{
	{"aws", listHead + `<Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>` +
		`<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>` +
		object("p/a", 1) + object("p/b c", 22) + `</ListBucketResult>`, true, []string{"p/a", "p/b c"}},
	{"versitygw", `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>noop</Name><Prefix>main/1/</Prefix>` +
		`<KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><Contents><LastModified>2026-11-30T07:59:14Z</LastModified>` +
		`<ChecksumAlgorithm>SHA256</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType><ETag>&#34;4dbbfcde0363d60be8ef048e9257d108&#34;</ETag>` +
		`<Key>main/1/0/out/file-0000.bin</Key><Size>1024</Size><StorageClass>STANDARD</StorageClass></Contents><EncodingType></EncodingType></ListBucketResult>`,
		true, []string{"main/1/0/out/file-0000.bin"}},
	{"escaped keys", listHead + object("a&amp;b &lt;c&gt; &quot;d&quot; &apos;e&apos;", 3) + object("&#233;t&#xe9; &#x1F600; ü/x]]", 4) +
		object("tab\tnl\nend", 5) + `</ListBucketResult>`, true, []string{`a&b <c> "d" 'e'`, "été 😀 ü/x]]", "tab\tnl\nend"}},
	{"indented", listHead + "\n  <IsTruncated>false</IsTruncated>\n  <Contents>\n    <Key>k</Key>\n    <Size>7</Size>\n" +
		"    <Owner><ID>x</ID><DisplayName>y</DisplayName></Owner>\n  </Contents>\n</ListBucketResult>\n", true, []string{"k"}},
	{"names in any case, later ones win", listHead + `<contents><KEY>old</KEY><key>k</key><size>1</size><SIZE>2</SIZE></contents>` +
		`<istruncated>true</istruncated><nextcontinuationtoken>t</nextcontinuationtoken></ListBucketResult>`, true, []string{"k"}},
	{"unknown and nested elements", listHead + `<Extra><Key>no</Key><Contents><Key>no</Key></Contents></Extra>` +
		`<Contents><Key>k</Key><Owner><Key>no</Key></Owner><RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress>` +
		`<RestoreExpiryDate>2026-12-01T00:00:00Z</RestoreExpiryDate></RestoreStatus><New><Deep/></New></Contents>` +
		`<CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes></ListBucketResult>`, true, []string{"k"}},
	{"empty elements", listHead + `<Contents/><Contents><Key/><Size></Size></Contents></ListBucketResult>`, false, nil},
	{"empty page", listHead + `<KeyCount>0</KeyCount></ListBucketResult>`, true, nil},
	{"self-closed root", `<ListBucketResult/>`, true, nil},
	{"no declaration", `<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>`, true, []string{"k"}},
	{"trailing bytes", listHead + `<Contents><Key>k</Key></Contents></ListBucketResult><junk`, true, []string{"k"}},
	// For the SDK to decode (or refuse).
	{"comment", listHead + `<!-- x --><Contents><Key>k</Key></Contents></ListBucketResult>`, false, []string{"k"}},
	{"CDATA", listHead + `<Contents><Key><![CDATA[a<b]]></Key></Contents></ListBucketResult>`, false, []string{"a<b"}},
	{"carriage return", listHead + "<Contents><Key>a\r\nb</Key></Contents></ListBucketResult>", false, []string{"a\nb"}},
	{"attribute", listHead + `<Contents><Key x="1">k</Key></Contents></ListBucketResult>`, false, []string{"k"}},
	{"namespace prefix", `<s3:ListBucketResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/"><s3:Contents><s3:Key>k</s3:Key></s3:Contents></s3:ListBucketResult>`, false, []string{"k"}},
	{"bad size", listHead + `<Contents><Key>k</Key><Size>1k</Size></Contents></ListBucketResult>`, false, nil},
	{"bad count", listHead + `<KeyCount>x</KeyCount></ListBucketResult>`, false, nil},
	{"bad time", listHead + `<Contents><LastModified>yesterday</LastModified></Contents></ListBucketResult>`, false, nil},
	{"unknown entity", listHead + `<Contents><ETag>&nbsp;</ETag></Contents></ListBucketResult>`, false, nil},
	{"NUL reference", listHead + `<Contents><Key>a&#0;</Key></Contents></ListBucketResult>`, false, nil},
	{"element in a value", listHead + `<Contents><Key>a<b/></Key></Contents></ListBucketResult>`, false, nil},
	{"mismatched end", listHead + `<Contents><Key>k</Size></Contents></ListBucketResult>`, false, nil},
	{"not closed", listHead + `<Contents><Key>k</Key>`, false, nil},
	{"]]> in text", listHead + `<Contents><Key>a]]>b</Key></Contents></ListBucketResult>`, false, nil},
	{"invalid UTF-8", listHead + "<Contents><Key>a\xffb</Key></Contents></ListBucketResult>", false, nil},
	{"other encoding", `<?xml version="1.0" encoding="ISO-8859-1"?><ListBucketResult></ListBucketResult>`, false, nil},
}

// TestListObjectsV2Decoding: parseListObjectsV2 reads what servers send as
// the SDK does, and leaves everything else to the SDK, which List then
// uses: the same keys, sizes, times and continuation, or the SDK's error.
func TestListObjectsV2Decoding(t *testing.T) {
	answer := &canned{}
	s := cannedSink(t, answer)
	for _, c := range listBodies {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(c.body)
			want, werr := sdkPage(body)
			got, ok := sink.ParseListObjectsV2(body)
			if ok != c.fast {
				t.Errorf("parsed here: %v, want %v", ok, c.fast)
			}
			if ok && (werr != nil || !samePage(got, want)) {
				t.Errorf("parsed %+v; the SDK: %+v, %v", got, want, werr)
			}
			if werr == nil && c.keys != nil && !slices.Equal(want.Keys, c.keys) {
				t.Errorf("the SDK read keys %q, want %q", want.Keys, c.keys)
			}
			answer.set(body)
			page, bySDK, err := s.ListPage(t.Context(), "", 0)
			if (err != nil) != (werr != nil) || err == nil && !samePage(page, want) {
				t.Errorf("listPage: %+v, %v; the SDK: %+v, %v", page, err, want, werr)
			}
			if err == nil && bySDK == ok {
				t.Errorf("listPage decoded by the SDK: %v, but parsed here: %v", bySDK, ok)
			}
		})
	}
}

// FuzzListObjectsV2: whatever the body, parseListObjectsV2 either leaves
// it to the SDK or reads exactly what the SDK reads from it (and the SDK
// does not fail on it); List's page is the SDK's in either case.
func FuzzListObjectsV2(f *testing.F) {
	for _, c := range listBodies {
		f.Add([]byte(c.body))
	}
	answer := &canned{}
	s := cannedSink(f, answer)
	f.Fuzz(func(t *testing.T, body []byte) {
		want, werr := sdkPage(body)
		got, ok := sink.ParseListObjectsV2(body)
		if ok && werr != nil {
			t.Fatalf("parsed %+v from a body the SDK refuses: %v", got, werr)
		}
		if ok && !samePage(got, want) {
			t.Fatalf("parsed %+v, the SDK %+v", got, want)
		}
		answer.set(body)
		page, _, err := s.ListPage(t.Context(), "", 0)
		if (err != nil) != (werr != nil) || err == nil && !samePage(page, want) {
			t.Fatalf("listPage: %+v, %v; the SDK: %+v, %v", page, err, want, werr)
		}
	})
}

// recorder keeps the bodies of the ListObjectsV2 answers it passes on.
type recorder struct {
	mu     stdsync.Mutex
	bodies [][]byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || req.URL.Query().Get("list-type") != "2" || resp.StatusCode != 200 {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.bodies = append(r.bodies, b)
	r.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// TestS3ListPages lists, a few keys a page, keys that XML must escape,
// and checks that every page the server sent was parsed here and read as
// the SDK reads it, and that List followed the continuation tokens to the
// last page.
func TestS3ListPages(t *testing.T) {
	env := sinktest.NewS3Bucket(t)
	t.Setenv("AWS_CA_BUNDLE", "") // the SDK cannot add it to a client of ours
	rec := &recorder{}
	cfg := env.Config("pages")
	cfg.HTTPClient = &http.Client{Transport: rec}
	s, err := sink.NewS3(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{`a&b`, `<tag>`, `"quoted"`, `it's`, "été/ü", "x]]>y", "emoji 😀", "sp ace/+plus", "pct%20", "semi;colon"}
	for i := range 7 {
		keys = append(keys, fmt.Sprintf("n/%02d", i))
	}
	for i, k := range keys {
		if _, err := s.Put(t.Context(), k, strings.NewReader(strings.Repeat("x", i)), sink.PutOptions{Size: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	s.SetMaxKeys(3)
	rec.mu.Lock()
	rec.bodies = nil
	rec.mu.Unlock()
	got := map[string]int64{}
	for info, err := range s.List(t.Context(), "") {
		if err != nil {
			t.Fatal(err)
		}
		got[info.Key] = info.Size
	}
	for i, k := range keys {
		if size, ok := got[k]; !ok || size != int64(i) {
			t.Errorf("List: %q has size %d (listed: %v), want %d", k, size, ok, i)
		}
	}
	if len(got) != len(keys) {
		t.Errorf("List yielded %d keys, want %d", len(got), len(keys))
	}
	if n := len(rec.bodies); n < len(keys)/3 {
		t.Fatalf("%d pages for %d keys at 3 a page", n, len(keys))
	}
	for i, b := range rec.bodies {
		want, err := sdkPage(b)
		if err != nil {
			t.Fatalf("page %d: the SDK: %v", i, err)
		}
		p, ok := sink.ParseListObjectsV2(b)
		if !ok || !samePage(p, want) {
			t.Errorf("page %d: parsed %+v (%v), the SDK %+v\n%s", i, p, ok, want, b)
		}
	}
}

// BenchmarkListObjectsV2Page decodes a page of 1,000 keys as versitygw
// sends it, here and by the SDK.
func BenchmarkListObjectsV2Page(b *testing.B) {
	var body strings.Builder
	body.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>noop</Name><Prefix>main/1/</Prefix><KeyCount>1000</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>`)
	for i := range 1000 {
		fmt.Fprintf(&body, `<Contents><LastModified>2026-11-30T07:59:14Z</LastModified><ChecksumAlgorithm>SHA256</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType><ETag>&#34;4dbbfcde0363d60be8ef048e9257d108&#34;</ETag><Key>main/1/0/out/file-%04d.bin</Key><Size>1024</Size><StorageClass>STANDARD</StorageClass></Contents>`, i)
	}
	body.WriteString(`<EncodingType></EncodingType></ListBucketResult>`)
	page := []byte(body.String())
	b.Run("here", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			if _, ok := sink.ParseListObjectsV2(page); !ok {
				b.Fatal("not parsed")
			}
		}
	})
	b.Run("sdk", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			if _, err := sdkPage(page); err != nil {
				b.Fatal(err)
			}
		}
	})
}
