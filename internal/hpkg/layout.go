package hpkg

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"hearth.dev/internal/manifest"
)

// AnnotationImageName is the annotation on each entry of images/index.json that names
// the manifest's image it is (the key under images:, such as "db").
const AnnotationImageName = "org.opencontainers.image.ref.name"

// Top-level names a package may hold besides manifest.yaml.
var topLevel = map[string]EntryType{
	"images": TypeDir, "assets": TypeDir,
	"icon.png": TypeFile, "icon.svg": TypeFile, "LICENSE": TypeFile, "README.md": TypeFile,
}

// checkLayout checks where entries are: the top-level names above, and under images/
// only an OCI layout whose blobs are named by their digest.
func (t *TOC) checkLayout() error {
	icons := 0
	for _, e := range t.Entries[1:] {
		top, rest, nested := strings.Cut(e.Path, "/")
		typ, ok := topLevel[top]
		if !ok || (!nested && typ != e.Type) {
			return badf("%s: a package holds only manifest.yaml, images/, assets/, icon.png or icon.svg, LICENSE and README.md", e.Path)
		}
		if top == "icon.png" || top == "icon.svg" {
			if icons++; icons > 1 {
				return badf("%s: give one icon, icon.png or icon.svg", e.Path)
			}
		}
		if top != "images" || !nested {
			continue
		}
		switch {
		case rest == "oci-layout" || rest == "index.json":
			if e.Type != TypeFile {
				return badf("%s must be a file", e.Path)
			}
		case rest == "blobs" || rest == "blobs/sha256":
			if e.Type != TypeDir {
				return badf("%s must be a directory", e.Path)
			}
		case strings.HasPrefix(rest, "blobs/sha256/") && e.Type == TypeFile:
			if name := strings.TrimPrefix(rest, "blobs/sha256/"); name != e.SHA256 {
				return badf("%s: a blob's name must be its sha256 (%s)", e.Path, e.SHA256)
			}
		default:
			return badf("%s: images/ holds an OCI image layout: oci-layout, index.json and blobs/sha256/<digest>", e.Path)
		}
	}
	return nil
}

// ociIndex is the part of an OCI index (images/index.json) a package needs.
type ociIndex struct {
	SchemaVersion int `json:"schemaVersion"`
	Manifests     []struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations"`
	} `json:"manifests"`
}

// checkImages checks that the manifest's images are all in the package's OCI layout:
// every image is oci:, and images/index.json has exactly one entry named for each of
// them (and none other), pointing at a blob of the package of the size it says.
// readFile reads a file of the package.
func checkImages(m *manifest.Manifest, t *TOC, readFile func(string) ([]byte, error)) error {
	for _, n := range slices.Sorted(maps.Keys(m.Images)) {
		if m.Images[n].Ref != "" {
			return badf("manifest.yaml: images.%s: ref %q names an image stored on one host; a package carries its images: give oci", n, m.Images[n].Ref)
		}
	}
	for _, p := range []string{"images/oci-layout", "images/index.json"} {
		if _, ok := t.Lookup(p); !ok {
			return badf("%s is missing: a package holds its images as an OCI layout in images/", p)
		}
	}
	data, err := readFile("images/oci-layout")
	if err != nil {
		return err
	}
	var ol struct {
		Version string `json:"imageLayoutVersion"`
	}
	if json.Unmarshal(data, &ol) != nil || ol.Version != "1.0.0" {
		return badf("images/oci-layout: want {\"imageLayoutVersion\": \"1.0.0\"}")
	}
	if data, err = readFile("images/index.json"); err != nil {
		return err
	}
	var idx ociIndex
	if err := json.Unmarshal(data, &idx); err != nil {
		return badf("images/index.json: %v", err)
	}
	if idx.SchemaVersion != 2 {
		return badf("images/index.json: schemaVersion %d, want 2", idx.SchemaVersion)
	}
	named := map[string]bool{}
	for i, d := range idx.Manifests {
		n := d.Annotations[AnnotationImageName]
		if _, ok := m.Images[n]; !ok {
			return badf("images/index.json: manifests[%d] is annotated %s=%q, which is not an image of manifest.yaml (it has %s)", i, AnnotationImageName, n, strings.Join(slices.Sorted(maps.Keys(m.Images)), ", "))
		}
		if named[n] {
			return badf("images/index.json: image %q is there twice", n)
		}
		named[n] = true
		hex, ok := strings.CutPrefix(d.Digest, "sha256:")
		if !ok {
			return badf("images/index.json: image %q: digest %q is not sha256", n, d.Digest)
		}
		e, ok := t.Lookup("images/blobs/sha256/" + hex)
		if !ok || e.Type != TypeFile {
			return badf("images/index.json: image %q: blob %s is not in the package", n, d.Digest)
		}
		if e.Size != d.Size {
			return badf("images/index.json: image %q: blob %s is %d bytes, the index says %d", n, d.Digest, e.Size, d.Size)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(m.Images)) {
		if !named[n] {
			return badf("images/index.json: no entry annotated %s=%q for image %q of manifest.yaml", AnnotationImageName, n, n)
		}
	}
	return nil
}

// parseManifest reads the package's manifest and checks it names the package the
// table says.
func parseManifest(data []byte, t *TOC) (*manifest.Manifest, error) {
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("package: %w: %w", err, errInvalid)
	}
	if t != nil && (m.ID != t.Package.ID || m.Version != t.Package.Version) {
		return nil, badf("manifest.yaml is %s %s but the table of contents says %s %s", m.ID, m.Version, t.Package.ID, t.Package.Version)
	}
	return m, nil
}
