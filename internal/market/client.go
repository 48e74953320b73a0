package market

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"hearth.dev/internal/errdefs"
)

// IndexURL is the URL of a marketplace's index: url itself when it names a .json file,
// url/index.json otherwise.
func IndexURL(u string) string {
	if strings.HasSuffix(u, ".json") {
		return u
	}
	return strings.TrimSuffix(u, "/") + "/" + IndexName
}

// Fetch downloads a marketplace's index and its signature and checks them (see Open).
// It returns the index and the index's URL (what version URLs are relative to).
func Fetch(ctx context.Context, hc *http.Client, m Marketplace) (*Index, string, error) {
	iu := IndexURL(m.URL)
	data, err := get(ctx, hc, iu, MaxIndexSize)
	if err != nil {
		return nil, "", fmt.Errorf("marketplace %s: %w", m.Name, err)
	}
	var pinned ed25519.PublicKey
	var sig []byte
	if !m.AllowUnsigned {
		k, err := m.PublicKey()
		if err != nil {
			return nil, "", err
		}
		pinned = k.Key
		su, _ := Resolve(iu, SigName)
		if sig, err = get(ctx, hc, su, MaxSigSize); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return nil, "", fmt.Errorf("marketplace %s: %w", m.Name, err)
		}
	}
	ix, err := Open(m.Name, data, sig, pinned)
	if err != nil {
		return nil, "", err
	}
	return ix, iu, nil
}

// get reads a small document whole.
func get(ctx context.Context, hc *http.Client, u string, max int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %w", u, err, errdefs.ErrInvalidArgument)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w: %w", u, err, errdefs.ErrUnavailable)
	}
	defer resp.Body.Close()
	if err := status(u, resp, http.StatusOK); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w: %w", u, err, errdefs.ErrUnavailable)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("get %s: over %d bytes: %w", u, max, errdefs.ErrInvalidArgument)
	}
	return b, nil
}

func status(u string, resp *http.Response, want ...int) error {
	for _, w := range want {
		if resp.StatusCode == w {
			return nil
		}
	}
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("get %s: 404 Not Found: %w", u, errdefs.ErrNotFound)
	}
	return fmt.Errorf("get %s: the server answered %s: %w", u, resp.Status, errdefs.ErrUnavailable)
}

// Errors of Download, each also wrapping an errdefs error.
var (
	// ErrDigest: the downloaded file is not the one the index names (its size or sha256
	// differs). The cached file has been removed.
	ErrDigest = errors.New("package file does not match the index")
	// ErrCut: the download stopped before the end; the part kept resumes next time.
	ErrCut = errors.New("download cut")
)

// Download fetches u into dir/<sha256>.hpkg and returns that path once the file's size
// and sha256 are want's. A complete file already there is checked and used; a partial
// one (dir/<sha256>.hpkg.part, left by a cut download) is resumed with an HTTP Range
// request from its size (a server that ignores Range sends the whole file again). A
// file that does not match is removed and the error wraps ErrDigest; a download that
// stops early keeps its part and wraps ErrCut. progress, when set, hears bytes done of
// the total, starting from what the part already held.
func Download(ctx context.Context, hc *http.Client, u string, want Version, dir string, progress func(done, total int64)) (string, error) {
	if progress == nil {
		progress = func(int64, int64) {}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	final := filepath.Join(dir, want.SHA256+".hpkg")
	part := final + ".part"
	if _, err := os.Stat(final); err == nil {
		if err := checkFile(final, want); err != nil {
			os.Remove(final)
			return "", err
		}
		progress(want.Size, want.Size)
		return final, nil
	}
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	// One download of a file at a time (another hearthctl may be fetching the same one).
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return "", fmt.Errorf("%s: another download of this file is under way (%v); wait for it: %w", part, err, errdefs.ErrUnavailable)
	}
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", err
	}
	if have > want.Size {
		// Not a part of this file: start again.
		if err := restart(f); err != nil {
			return "", err
		}
		have = 0
	}
	if have < want.Size {
		if err := fetchRange(ctx, hc, u, f, have, want.Size, progress); err != nil {
			return "", err
		}
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := checkFile(part, want); err != nil {
		os.Remove(part)
		return "", err
	}
	if err := os.Rename(part, final); err != nil {
		return "", err
	}
	return final, nil
}

func restart(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// fetchRange appends bytes [have, size) of u to f (at its end).
func fetchRange(ctx context.Context, hc *http.Client, u string, f *os.File, have, size int64, progress func(done, total int64)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%s: %v: %w", u, err, errdefs.ErrInvalidArgument)
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w: %w", u, err, errdefs.ErrUnavailable)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, ok := rangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != have {
			return fmt.Errorf("get %s: asked for bytes from %d, the server sent Content-Range %q: %w", u, have, resp.Header.Get("Content-Range"), errdefs.ErrUnavailable)
		}
	case http.StatusOK:
		// The whole file (the server ignores Range, or none was asked).
		if err := restart(f); err != nil {
			return err
		}
		have = 0
	case http.StatusRequestedRangeNotSatisfiable:
		// The server's file is shorter than the part: not the file the index names.
		discard(f)
		return fmt.Errorf("get %s: the server's file is shorter than the %d bytes already downloaded, so it is not the file the index names (%d bytes); the part is removed: %w: %w", u, have, size, ErrDigest, errdefs.ErrInvalidArgument)
	default:
		return status(u, resp)
	}
	progress(have, size)
	done := have
	buf := make([]byte, 256<<10)
	for done < size {
		n, rerr := resp.Body.Read(buf[:min(int64(len(buf)), size-done)])
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			done += int64(n)
			progress(done, size)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("get %s: the download was cut after %d of %d bytes (%v); run the command again to resume it: %w: %w", u, done, size, rerr, ErrCut, errdefs.ErrUnavailable)
		}
	}
	if done < size {
		return fmt.Errorf("get %s: the download was cut after %d of %d bytes; run the command again to resume it: %w: %w", u, done, size, ErrCut, errdefs.ErrUnavailable)
	}
	// More than the index says: the file is not the one listed.
	if n, _ := resp.Body.Read(make([]byte, 1)); n > 0 {
		discard(f)
		return fmt.Errorf("get %s: the server sent more than the %d bytes the index names: the file is not the one listed (the part downloaded is removed): %w: %w", u, size, ErrDigest, errdefs.ErrInvalidArgument)
	}
	return nil
}

// discard removes a part that is not of the file wanted.
func discard(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// rangeStart reads the first byte position of a Content-Range "bytes A-B/N".
func rangeStart(cr string) (int64, bool) {
	s, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	a, _, ok := strings.Cut(s, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(a, 10, 64)
	return n, err == nil
}

// checkFile checks a file's size and sha256 against the index's.
func checkFile(p string, want Version) error {
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", p, err)
		}
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if n != want.Size || got != want.SHA256 {
		return fmt.Errorf("the downloaded file is %d bytes with sha256 %s, but the index names %d bytes with sha256 %s: the file on the server was altered or damaged; it was not installed and the downloaded copy is removed: %w: %w",
			n, got, want.Size, want.SHA256, ErrDigest, errdefs.ErrInvalidArgument)
	}
	return nil
}
