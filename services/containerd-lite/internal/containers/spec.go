package containers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"

	"hearth.dev/internal/bytesize"
	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Spec is what a container is made of beyond the base.
type Spec struct {
	// Images maps the container's names for images to stored image references.
	Images map[string]string
	// Volumes names the container's volumes.
	Volumes []string
	// Limits asked for; the host policy fills and caps them.
	Limits store.Limits
	// Assets is a host directory of the package's files, bound read-only at
	// /media/hearth/assets.
	Assets string
	// Manifest, when set, is a package manifest: it gives the volumes and limits, and the
	// images by ref unless Images gives each of them (a package's images, imported from
	// its file, by digest); guestd runs its daemons.
	Manifest []byte
}

// fromManifest fills a spec from its manifest.
func fromManifest(spec Spec) (Spec, error) {
	if len(spec.Manifest) == 0 {
		return spec, nil
	}
	if len(spec.Volumes) > 0 || spec.Limits != (store.Limits{}) {
		return spec, fmt.Errorf("give either a manifest or volumes and limits, not both: %w", errdefs.ErrInvalidArgument)
	}
	m, err := manifest.Parse(spec.Manifest)
	if err != nil {
		return spec, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	given := spec.Images
	spec.Images = map[string]string{}
	for n, img := range m.Images {
		switch ref, ok := given[n]; {
		case ok:
			spec.Images[n] = ref
		case img.Ref != "":
			spec.Images[n] = img.Ref
		default:
			return spec, fmt.Errorf("manifest images.%s: only ref images can be used here (oci images come inside a package: install it): %w", n, errdefs.ErrInvalidArgument)
		}
	}
	for n := range given {
		if _, ok := m.Images[n]; !ok {
			return spec, fmt.Errorf("image %q is not in the manifest: %w", n, errdefs.ErrInvalidArgument)
		}
	}
	spec.Volumes = m.Volumes
	spec.Limits = store.Limits{CPUs: m.Limits.CPUs, Pids: m.Limits.Pids}
	// Sizes are validated by Parse.
	if m.Limits.Memory != "" {
		spec.Limits.MemoryBytes, _ = bytesize.Parse(m.Limits.Memory)
	}
	if m.Limits.Disk != "" {
		spec.Limits.DiskBytes, _ = bytesize.Parse(m.Limits.Disk)
	}
	return spec, nil
}

// itemRE names images, volumes and overlays inside a container.
var itemRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

func validItem(kind, name string) error {
	if !itemRE.MatchString(name) {
		return fmt.Errorf("%s name %q: use 1 to 64 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit: %w", kind, name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// resolveSpec checks a spec and turns it into a record: image references become digests,
// limits go through the host policy.
func (m *Manager) resolveSpec(name string, spec Spec) (store.Container, error) {
	rec := store.Container{Name: name, CreatedAt: time.Now().UTC(), BaseRootfs: m.opts.BaseRootfs, Manifest: spec.Manifest, Assets: spec.Assets}
	spec, err := fromManifest(spec)
	if err != nil {
		return rec, fmt.Errorf("container %q: %w", name, err)
	}
	if len(spec.Images) > 0 {
		if m.opts.Images == nil {
			return rec, fmt.Errorf("this containerd-lite has no image store: %w", errdefs.ErrFailedPrecondition)
		}
		rec.Images = map[string]string{}
		for k, ref := range spec.Images {
			if err := validItem("image", k); err != nil {
				return rec, err
			}
			d, err := m.opts.Images.Resolve(ref)
			if err != nil {
				return rec, fmt.Errorf("container %q image %s: %w", name, k, err)
			}
			rec.Images[k] = d
		}
	}
	for i, v := range spec.Volumes {
		if err := validItem("volume", v); err != nil {
			return rec, err
		}
		if slices.Contains(spec.Volumes[:i], v) {
			return rec, fmt.Errorf("volume %q named twice: %w", v, errdefs.ErrInvalidArgument)
		}
	}
	rec.Volumes = slices.Clone(spec.Volumes)
	l, notes, err := m.opts.Policy.Apply(spec.Limits)
	if err != nil {
		return rec, fmt.Errorf("container %q: %w: %w", name, err, errdefs.ErrInvalidArgument)
	}
	for _, n := range notes {
		m.log.Warn("limit capped by host policy", "container", name, "note", n)
	}
	rec.Limits = l
	return rec, nil
}

// bundle is the package for guestd: the manifest and each image's defaults; nil for a
// container without a package.
func (m *Manager) bundle(ctx context.Context, rec store.Container, run []manifest.HookRun, idle bool) ([]byte, error) {
	if len(rec.Manifest) == 0 {
		if len(run) > 0 {
			return nil, fmt.Errorf("container %q runs no package: it has no hooks to run: %w", rec.Name, errdefs.ErrFailedPrecondition)
		}
		return nil, nil
	}
	mf, err := manifest.Parse(rec.Manifest)
	if err != nil {
		return nil, err
	}
	b := manifest.Bundle{Manifest: mf, Images: map[string]manifest.ImageDefaults{}, Run: run, Idle: idle}
	if m.opts.Network != nil {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if dns := m.opts.Network.Resolver(rctx); dns != "" {
			b.Nameservers = []string{dns}
		}
		cancel()
	}
	if _, err := b.WithHooks(); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	for n, d := range rec.Images {
		if b.Images[n], err = m.opts.Images.Defaults(d); err != nil {
			return nil, fmt.Errorf("image %s: %w", n, err)
		}
	}
	return json.Marshal(b)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// stopTimeout is how long a container's init gets to stop: its daemons' stop timeouts
// one after another, and a margin; 10s without a package.
func stopTimeout(rec store.Container) time.Duration {
	mf, err := manifest.Parse(rec.Manifest)
	if len(rec.Manifest) == 0 || err != nil {
		return DefaultStopTimeout
	}
	total := 5 * time.Second
	for _, d := range mf.Daemons {
		total += d.Stop.Timeout.D(10 * time.Second)
	}
	return min(total, 10*time.Minute)
}
