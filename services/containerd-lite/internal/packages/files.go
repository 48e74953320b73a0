package packages

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The files a package may carry besides its manifest and images: kept on the host per
// version, assets/ bound read-only into the container, the others shown by info.
var packageFiles = []string{"assets", "README.md", "LICENSE", "icon.png", "icon.svg"}

// filesDir is where a version's files are kept.
func (m *Manager) filesDir(id, version string) string {
	return filepath.Join(m.opts.StateDir, "files", id, version)
}

// keepFiles moves a verified package's files from its staging directory to the host's
// (a rename: both are below StateDir); it returns the assets directory, or "".
func (m *Manager) keepFiles(v Verified) (string, error) {
	dst := m.filesDir(v.ID, v.Version)
	if err := os.RemoveAll(dst); err != nil {
		return "", err
	}
	// Host-only above; the assets themselves are bound into the container, where their
	// modes (0755, 0644) let its users read them.
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return "", err
	}
	assets := ""
	for _, n := range packageFiles {
		err := os.Rename(filepath.Join(v.Dir, n), filepath.Join(dst, n))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("keep %s: %w", n, err)
		}
		if n == "assets" {
			assets = filepath.Join(dst, n)
		}
	}
	return assets, nil
}

// dropFiles removes a version's files, or all the package's with version "".
func (m *Manager) dropFiles(id, version string) {
	p := filepath.Join(m.opts.StateDir, "files", id)
	if version != "" {
		p = m.filesDir(id, version)
	}
	if err := os.RemoveAll(p); err != nil {
		m.log.Warn("remove a package's files", "path", p, "error", err)
	}
}

// Files returns the README and LICENSE of an installed package (empty when it has none).
func (m *Manager) Files(id, version string) (readme, license string) {
	dir := m.filesDir(id, version)
	r, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	l, _ := os.ReadFile(filepath.Join(dir, "LICENSE"))
	return string(r), string(l)
}
