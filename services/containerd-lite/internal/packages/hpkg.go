package packages

import (
	"context"
	"fmt"
	"io"
	"os"

	"hearth.dev/internal/hpkg"
)

// HpkgVerifier verifies .hpkg files against the host's trusted keys.
func HpkgVerifier(trust hpkg.Trust) Verifier {
	return func(ctx context.Context, r io.Reader, dir string, allowUntrusted bool, accept func(id, version string) error, progress func(done, total int64)) (Verified, error) {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return Verified{}, fmt.Errorf("staging: %w", err)
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			return Verified{}, err
		}
		defer root.Close()
		v, err := hpkg.Verify(ctx, r, trust, root, hpkg.VerifyOptions{
			AllowUntrusted: allowUntrusted,
			Accept:         func(v *hpkg.Verified) error { return accept(v.TOC.Package.ID, v.TOC.Package.Version) },
			Progress:       progress,
		})
		if err != nil {
			return Verified{}, err
		}
		return Verified{Dir: dir, ID: v.TOC.Package.ID, Version: v.TOC.Package.Version, Signer: v.KeyID, Trusted: v.Trusted, Signed: v.Signed}, nil
	}
}
