package circlecitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// serverCert is the certificate every host of a TLS Server presents: one
// self-signed certificate for 127.0.0.1, ::1 and localhost, made when the
// Server starts, so that a client trusts the fake by trusting that
// certificate alone (for Go programs on Linux, SSL_CERT_FILE naming CertPEM
// written to a file), never by turning verification off.
type serverCert struct {
	pair tls.Certificate
	leaf *x509.Certificate
	pem  []byte
}

func newServerCert() (*serverCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("circlecitest: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("circlecitest: certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"circlecitest"}, CommonName: "circlecitest fake CircleCI"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		// A CA as well as a server certificate: trust stores that want
		// their anchors to be CAs (OpenSSL's, for curl) accept it too.
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("circlecitest: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("circlecitest: certificate: %w", err)
	}
	return &serverCert{
		pair: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		leaf: leaf,
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// CertPEM returns the certificate the hosts present with Options.TLS, PEM
// encoded (nil without TLS). Written to a file, it is what a client trusts:
// SSL_CERT_FILE for Go programs and curl on Linux, --ca-certificate for
// wget and aria2c.
func (s *Server) CertPEM() []byte {
	if s.cert == nil {
		return nil
	}
	return append([]byte(nil), s.cert.pem...)
}

// CertPool returns a pool holding only the certificate the hosts present
// with Options.TLS (nil without TLS), for a client's tls.Config.RootCAs.
func (s *Server) CertPool() *x509.CertPool {
	if s.cert == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AddCert(s.cert.leaf)
	return p
}
