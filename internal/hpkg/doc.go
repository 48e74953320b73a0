// Package hpkg reads and writes Hearth packages (.hpkg): an uncompressed ustar file whose
// first entry is a table of contents (every other entry's path, type, size and sha256,
// and the package's id and version), then an ed25519 signature of that table, then
// manifest.yaml, images/ (one OCI layout) and optional assets, icon, LICENSE and README.
// docs/hpkg.md describes the format byte by byte.
//
// A developer writes a package with Write (hearthctl pack). An installer verifies one
// with Verify, which streams it into a staging directory of the installer's:
//
//	store, _ := hpkg.OpenTrustStore(filepath.Join(stateDir, "trust"))
//	stage, _ := os.MkdirTemp(tmpDir, "install-")      // empty, the installer's own
//	root, _ := os.OpenRoot(stage)
//	v, err := hpkg.Verify(ctx, file, store, root, hpkg.VerifyOptions{
//		AllowUntrusted: req.AllowUntrusted,
//		Accept: func(v *hpkg.Verified) error { return checkVersion(v.Manifest) }, // before the images
//		Progress: report,
//	})
//	if err != nil { ... }                               // nothing is left in stage
//	// stage/manifest.yaml, stage/images (an OCI layout: image "db" is the index entry
//	// annotated AnnotationImageName=db), stage/assets...; tell the user v.Signer().
//
// Refusals wrap errdefs.ErrInvalidArgument (a bad package) or errdefs.ErrPermissionDenied
// (ErrUntrustedKey, ErrUnsigned).
package hpkg
