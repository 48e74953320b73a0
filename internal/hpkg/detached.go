package hpkg

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"hearth.dev/internal/errdefs"
)

// SignDetached returns a detached signature of data by key: one line of JSON,
// {"algorithm":"ed25519","key":"<base64 public key>","signature":"<base64>"}, the format
// of a package's hpkg-toc.sig (a marketplace's index.json.sig uses it too).
func SignDetached(data []byte, key ed25519.PrivateKey) []byte {
	sig, _ := json.Marshal(signature{
		Algorithm: "ed25519",
		Key:       base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(key, data)),
	})
	return append(sig, '\n')
}

// parseSignature reads a detached signature (what names it in errors) and returns the
// signer's key and the signature, unchecked.
func parseSignature(what string, data []byte) (ed25519.PublicKey, []byte, error) {
	var s signature
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, nil, badf("%s: %v", what, err)
	}
	if canon, err := json.Marshal(s); err != nil || !bytes.Equal(append(canon, '\n'), data) {
		return nil, nil, badf("%s is not in canonical form", what)
	}
	if s.Algorithm != "ed25519" {
		return nil, nil, badf("%s: algorithm %q; only ed25519 is known", what, s.Algorithm)
	}
	key, err1 := base64.StdEncoding.Strict().DecodeString(s.Key)
	sig, err2 := base64.StdEncoding.Strict().DecodeString(s.Signature)
	if err1 != nil || err2 != nil || len(key) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return nil, nil, badf("%s: the key or signature is not base64 of the right size", what)
	}
	return ed25519.PublicKey(key), sig, nil
}

// VerifyDetached checks a detached signature (what names it in errors) of data and
// returns the signer's key. A signature that does not match wraps
// errdefs.ErrInvalidArgument and names the signer.
func VerifyDetached(what string, sigData, data []byte) (ed25519.PublicKey, error) {
	key, sig, err := parseSignature(what, sigData)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(key, data, sig) {
		return nil, fmt.Errorf("%s does not match the data it signs: it was altered or damaged (signer key %s): %w", what, KeyID(key), errdefs.ErrInvalidArgument)
	}
	return key, nil
}
