package hpkg

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
)

// Refusals of a signer, each also wrapping errdefs.ErrPermissionDenied.
var (
	// ErrUnsigned: the package has no signature.
	ErrUnsigned = errors.New("package is not signed")
	// ErrUntrustedKey: the package is signed by a key the trust store does not hold.
	ErrUntrustedKey = errors.New("package is signed by an untrusted key")
)

// VerifyOptions tune Verify. The zero value installs only packages signed by a trusted key.
type VerifyOptions struct {
	// AllowUntrusted accepts an unsigned package, or one signed by a key Trust does not
	// hold (the signature must still be valid). The result says which case it was.
	AllowUntrusted bool
	// Accept, when set, is called once the table, the signer and the manifest are known
	// and checked, before any other entry is read; an error from it stops Verify (use it
	// to refuse a downgrade, or to take the package's lock, before the images stream).
	Accept func(*Verified) error
	// Progress, when set, is called as file content is read: bytes done of total.
	Progress func(done, total int64)
}

// Verified is what Verify found.
type Verified struct {
	TOC *TOC
	// Manifest is the package's manifest.yaml, parsed and validated.
	Manifest *manifest.Manifest
	// Key is the signer's key, KeyID its fingerprint; both empty when Signed is false.
	Signed bool
	Key    ed25519.PublicKey
	KeyID  string
	// Trusted: signed by a key Trust holds. A package that is not Trusted got through
	// only because AllowUntrusted was set.
	Trusted bool
}

// Signer describes the signer for people: "signed by trusted key <id>", "signed by
// untrusted key <id>" or "unsigned".
func (v *Verified) Signer() string {
	switch {
	case !v.Signed:
		return "unsigned"
	case v.Trusted:
		return "signed by trusted key " + v.KeyID
	}
	return "signed by untrusted key " + v.KeyID
}

// Verify reads a package from r and unpacks it into dst, an empty staging directory
// the caller made and owns; every write goes through dst (an os.Root), so nothing is
// written outside it and no link or special file is ever made.
//
// It reads the table of contents and the signature first and decides on the signer
// before anything else: a package signed by a key that trust does not hold (trust may
// be nil: no key is trusted) or an unsigned one is refused, with ErrUntrustedKey or
// ErrUnsigned, unless opts.AllowUntrusted. It then reads manifest.yaml and checks it
// (opts.Accept runs here), then streams every entry into dst, hashing as it goes.
//
// It refuses, wrapping errdefs.ErrInvalidArgument and naming the entry: a bad or
// non-canonical table, a bad signature, an entry not in the table, missing, repeated or
// out of order, a header other than the one the format prescribes (so links, devices,
// absolute or '..' paths never pass), a size or sha256 that does not match, non-zero
// padding, a truncated stream, anything after the end of the archive, and a manifest or
// OCI layout that does not fit the package. On any error, every entry it made in dst
// is removed again.
func Verify(ctx context.Context, r io.Reader, trust Trust, dst *os.Root, opts VerifyOptions) (v *Verified, err error) {
	vr := &verifier{r: bufio.NewReaderSize(r, 128<<10), dst: dst, opts: opts, ctx: ctx}
	defer func() {
		if err != nil {
			vr.undo()
		}
	}()
	return vr.run(trust)
}

type verifier struct {
	ctx     context.Context
	r       *bufio.Reader
	dst     *os.Root
	opts    VerifyOptions
	made    []string // entries created in dst, in order
	done    int64
	total   int64
	hdr     []byte
	pending bool // hdr holds a header read but not yet consumed
}

func (v *verifier) undo() {
	for i := len(v.made) - 1; i >= 0; i-- {
		v.dst.Remove(v.made[i])
	}
}

// block reads one 512-byte block; what names the place for a truncation message.
func (v *verifier) block(what string) ([]byte, error) {
	b := make([]byte, blockSize)
	if _, err := io.ReadFull(v.r, b); err != nil {
		return nil, truncated(what, err)
	}
	return b, nil
}

func truncated(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return badf("truncated: the file ends inside %s", what)
	}
	return fmt.Errorf("package: read %s: %w", what, err)
}

// readSmall reads an entry of at most max bytes whose header is the canonical one.
func (v *verifier) readSmall(hdr []byte, name string, max int64) ([]byte, error) {
	if headerName(hdr) != name {
		return nil, badf("not a Hearth package (or one damaged at its start): the first entry is %q, want %s", headerName(hdr), name)
	}
	size, ok := headerSize(hdr)
	if !ok || size > max {
		return nil, badf("%s: its header is damaged or its size is over %d bytes", name, max)
	}
	want, err := header(name, TypeFile, size)
	if err != nil || !bytes.Equal(want, hdr) {
		return nil, badf("%s: its tar header is not the one the format prescribes (the file is damaged)", name)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(v.r, body); err != nil {
		return nil, truncated(name, err)
	}
	if err := v.pad(name, size); err != nil {
		return nil, err
	}
	return body, nil
}

// pad reads and checks the zero padding after a body of size n.
func (v *verifier) pad(name string, n int64) error {
	p := padding(n)
	if p == 0 {
		return nil
	}
	b := make([]byte, p)
	if _, err := io.ReadFull(v.r, b); err != nil {
		return truncated("the padding after "+name, err)
	}
	if !isZero(b) {
		return badf("%s: the padding after it is not zero (the file is damaged)", name)
	}
	return nil
}

func (v *verifier) run(trust Trust) (*Verified, error) {
	first, err := v.block("the table of contents' header")
	if err != nil {
		return nil, err
	}
	tocData, err := v.readSmall(first, TOCName, MaxTOCSize)
	if err != nil {
		return nil, err
	}
	toc, err := ParseTOC(tocData)
	if err != nil {
		return nil, err
	}
	res := &Verified{TOC: toc}
	v.total = toc.Size()

	// The signature, if any, is the next entry.
	hdr, err := v.block("the header after the table of contents")
	if err != nil {
		return nil, err
	}
	if headerName(hdr) == SigName {
		sigData, err := v.readSmall(hdr, SigName, maxSigSize)
		if err != nil {
			return nil, err
		}
		key, err := checkSignature(sigData, tocData)
		if err != nil {
			return nil, err
		}
		res.Signed, res.Key, res.KeyID = true, key, KeyID(key)
		if hdr, err = v.block("the header of " + ManifestName); err != nil {
			return nil, err
		}
	}
	if res.Signed && trust != nil {
		if res.Trusted, err = trust.IsTrusted(res.Key); err != nil {
			return nil, err
		}
	}
	switch {
	case res.Trusted || v.opts.AllowUntrusted:
	case res.Signed:
		return nil, fmt.Errorf("package %s %s is signed by key %s, which this host does not trust; trust it (hearthctl keys trust KEY.pub) if you trust its maker, or allow untrusted packages: %w: %w",
			toc.Package.ID, toc.Package.Version, res.KeyID, ErrUntrustedKey, errdefs.ErrPermissionDenied)
	default:
		return nil, fmt.Errorf("package %s %s is not signed; allow untrusted packages to install it anyway: %w: %w",
			toc.Package.ID, toc.Package.Version, ErrUnsigned, errdefs.ErrPermissionDenied)
	}

	v.hdr, v.pending = hdr, true
	for i, e := range toc.Entries {
		if err := v.ctx.Err(); err != nil {
			return nil, err
		}
		if err := v.expect(toc, i); err != nil {
			return nil, err
		}
		if i == 0 {
			data, err := v.manifest(e)
			if err != nil {
				return nil, err
			}
			if res.Manifest, err = parseManifest(data, toc); err != nil {
				return nil, err
			}
			if v.opts.Accept != nil {
				if err := v.opts.Accept(res); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := v.entry(e); err != nil {
			return nil, err
		}
	}
	if err := v.end(toc); err != nil {
		return nil, err
	}
	err = checkImages(res.Manifest, toc, func(p string) ([]byte, error) {
		f, err := v.dst.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return io.ReadAll(io.LimitReader(f, MaxTOCSize))
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func checkSignature(data, tocData []byte) (ed25519.PublicKey, error) {
	key, sig, err := parseSignature(SigName, data)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(key, tocData, sig) {
		return nil, badf("the signature does not match the table of contents: the package was altered or damaged (signer key %s)", KeyID(key))
	}
	return key, nil
}

// next returns the pending header, or reads one.
func (v *verifier) next(what string) ([]byte, error) {
	if v.pending {
		v.pending = false
		return v.hdr, nil
	}
	return v.block(what)
}

// expect reads the header of entry i and checks it is exactly the one the table says.
func (v *verifier) expect(toc *TOC, i int) error {
	e := toc.Entries[i]
	hdr, err := v.next("the header of " + e.Path)
	if err != nil {
		return err
	}
	want, err := header(e.Path, e.Type, e.Size)
	if err != nil {
		return badf("%v", err)
	}
	if bytes.Equal(hdr, want) {
		return nil
	}
	if isZero(hdr) {
		return badf("entry %s is missing: the archive ends before it", e.Path)
	}
	got := headerName(hdr)
	if k := headerKind(hdr); hdr[offType] != '0' && hdr[offType] != '5' {
		return badf("entry %s is a %s: a package holds only files and directories", got, k)
	}
	if got == TOCName {
		return badf("a second table of contents where %s should be", e.Path)
	}
	if got == e.Path {
		return badf("entry %s: its tar header differs from what the table of contents says (type, size, mode, owner, time or checksum)", e.Path)
	}
	for j, o := range toc.Entries {
		if o.Path != got {
			continue
		}
		if j < i {
			return badf("entry %s appears twice", got)
		}
		return badf("entry %s is missing or out of order (found %s in its place)", e.Path, got)
	}
	return badf("entry %s is not in the table of contents (found where %s should be)", got, e.Path)
}

// manifest reads the manifest's content, checks its digest, and writes it to dst.
func (v *verifier) manifest(e Entry) ([]byte, error) {
	if e.Size > manifest.MaxSize {
		return nil, badf("%s is %d bytes; at most %d", e.Path, e.Size, manifest.MaxSize)
	}
	data := make([]byte, e.Size)
	if _, err := io.ReadFull(v.r, data); err != nil {
		return nil, truncated(e.Path, err)
	}
	if err := v.pad(e.Path, e.Size); err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != e.SHA256 {
		return nil, badf("entry %s: its content does not match its sha256 in the table of contents (altered or damaged)", e.Path)
	}
	v.progress(e.Size)
	if err := v.create(e, bytes.NewReader(data)); err != nil {
		return nil, err
	}
	return data, nil
}

func (v *verifier) progress(n int64) {
	v.done += n
	if v.opts.Progress != nil {
		v.opts.Progress(v.done, v.total)
	}
}

// entry streams one entry (its header already checked) into dst.
func (v *verifier) entry(e Entry) error {
	if e.Type == TypeDir {
		if err := v.dst.Mkdir(e.Path, 0o755); err != nil {
			return fmt.Errorf("package: create %s: %w", e.Path, err)
		}
		v.made = append(v.made, e.Path)
		return nil
	}
	h := sha256.New()
	if err := v.create(e, io.TeeReader(&progressReader{v: v, r: io.LimitReader(v.r, e.Size)}, h)); err != nil {
		return err
	}
	if err := v.pad(e.Path, e.Size); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
		return badf("entry %s: its content does not match its sha256 in the table of contents (altered or damaged)", e.Path)
	}
	return nil
}

// create writes a new file (never an existing one) in dst with e.Size bytes of r.
func (v *verifier) create(e Entry, r io.Reader) error {
	f, err := v.dst.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("package: create %s: %w", e.Path, err)
	}
	v.made = append(v.made, e.Path)
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var pe *readError
		if errors.As(err, &pe) {
			return pe.err
		}
		return fmt.Errorf("package: write %s: %w", e.Path, err)
	}
	if n != e.Size {
		return badf("truncated: the file ends inside %s (%d of %d bytes)", e.Path, n, e.Size)
	}
	return nil
}

// readError marks an error of the package stream (not of the staging directory).
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

// progressReader reads the package stream, reporting progress and the context's end.
type progressReader struct {
	v     *verifier
	r     io.Reader
	unrep int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.v.ctx.Err(); err != nil {
		return 0, &readError{err}
	}
	n, err := p.r.Read(b)
	p.unrep += int64(n)
	if p.unrep >= 1<<20 || (err != nil && p.unrep > 0) {
		p.v.progress(p.unrep)
		p.unrep = 0
	}
	if err != nil && err != io.EOF {
		return n, &readError{fmt.Errorf("package: read: %w", err)}
	}
	return n, err
}

// end checks the end of the archive: two zero blocks, then nothing.
func (v *verifier) end(toc *TOC) error {
	for i := 0; i < 2; i++ {
		b, err := v.next("the end of the archive")
		if err != nil {
			return err
		}
		if isZero(b) {
			continue
		}
		name := headerName(b)
		switch {
		case name == TOCName:
			return badf("a second table of contents after the last entry")
		case i == 0:
			if _, ok := toc.Lookup(name); ok {
				return badf("entry %s appears twice", name)
			}
			return badf("entry %s is not in the table of contents (found after the last entry)", name)
		}
		return badf("the end of the archive is damaged (its second zero block is not zero)")
	}
	var one [1]byte
	if n, _ := io.ReadFull(v.r, one[:]); n != 0 {
		return badf("data after the end of the archive")
	}
	return nil
}
