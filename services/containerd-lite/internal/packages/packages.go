// Package packages is the package lifecycle: install a verified .hpkg file, update it to
// a newer version with an automatic rollback, uninstall it. Every operation is journaled
// in the store step by step before the step's effect, so that after a kill -9 or a power
// cut the next start-up (Reconcile) finishes what had committed and undoes the rest: a
// package is never left half installed or half updated.
//
// Install: verified (the file streamed into a staging directory and checked) → images
// (imported; the new ones noted) → created (the container and its volumes) → started
// (with the install hook as its first job) → ready → committed.
// Update: verified → images → stopped → snapshot (the volumes copied aside, through
// descriptors) → replaced (the container's images, manifest and limits) → started (with
// the migrate hook) → ready → committed (the old images and the snapshot go). A failure
// at any step, or a crash before the commit, rolls back: the old record, the volumes as
// the snapshot kept them, and the old version started again.
package packages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/keylock"
	"hearth.dev/internal/manifest"
	"hearth.dev/services/containerd-lite/internal/containers"
	"hearth.dev/services/containerd-lite/internal/guestclient"
	"hearth.dev/services/containerd-lite/internal/store"
)

// Containers is what packages need of the container lifecycle (containers.Manager).
type Containers interface {
	Create(ctx context.Context, name string, spec containers.Spec) (containers.Info, error)
	StartWith(ctx context.Context, name string, run []manifest.HookRun) (containers.Info, error)
	StartIdle(ctx context.Context, name string) (containers.Info, error)
	Stop(ctx context.Context, name string, timeout time.Duration) (containers.Info, error)
	Delete(ctx context.Context, name string, force, purgeVolumes bool) error
	Get(ctx context.Context, name string) (containers.Info, error)
	Replace(ctx context.Context, name string, spec containers.Spec) (store.Container, error)
	Revert(ctx context.Context, prev store.Container) error
	WithVolumes(ctx context.Context, name string, fn func(volumes map[string]string) error) error
	WithVolumesQuiet(ctx context.Context, name string, fn func(volumes map[string]string) error) error
	GuestDialer(name string) (guestclient.Dialer, error)
}

// Images is what packages need of the image store.
type Images interface {
	// ImportPackaged imports the image called name in the OCI layout at dir (a package's
	// images/) and names it storeName; it reports its digest.
	ImportPackaged(ctx context.Context, dir, name, storeName string, progress func(done, total int64)) (digest string, added bool, err error)
	// Unname drops a name, and the image with it when no other name is left and no
	// container uses it.
	Unname(ctx context.Context, name string) error
}

// Records are the store's packages and journal.
type Records interface {
	GetPackage(id string) (store.Package, error)
	ListPackages() ([]store.Package, error)
	CommitPackage(store.Package) error
	RemovePackage(id string) error
	PutJournal(store.Journal) error
	GetJournal(id string) (store.Journal, error)
	ListJournal() ([]store.Journal, error)
	DeleteJournal(id string) error
	GetKept(name string) (store.Kept, error)
}

// Verified is a package file checked and unpacked into a staging directory.
type Verified struct {
	// Dir holds the package's entries: manifest.yaml, images/, assets/ ...
	Dir             string
	ID, Version     string
	Signer          string
	Trusted, Signed bool
}

// Verifier checks a package file as it streams into dir (which it creates), trusting the
// host's keys; an unsigned or untrusted package is refused unless allowUntrusted. accept
// is called with the package's id and version once they are known to be signed as
// claimed, before the images stream; its error stops the verification.
type Verifier func(ctx context.Context, r io.Reader, dir string, allowUntrusted bool, accept func(id, version string) error, progress func(done, total int64)) (Verified, error)

// Options configure a Manager.
type Options struct {
	Containers Containers
	Images     Images
	Records    Records
	Verify     Verifier
	// StateDir holds staging/ (verified files) and snapshots/ (volumes kept during updates).
	StateDir string
	Logger   *slog.Logger
	// Net is netd's bindings (nil without netd).
	Net Net
	// CrashAt, for tests only, kills the daemon (SIGKILL) right after the journal records
	// the named step ("install:images", "update:replaced", ...).
	CrashAt string
}

// Manager runs package operations; one at a time per package.
type Manager struct {
	opts  Options
	log   *slog.Logger
	locks keylock.Map
	mu    sync.Mutex // guards nothing but the staging counter
	seq   int
	dep   depState // dependencies: intents and the waiter (deps.go)
	// effects are the package effects (Effects), told of purges; sinks map a package
	// to the progress of its operation under way, which its scripts' progress joins.
	effects atomic.Pointer[Effects]
	sinks   sync.Map
}

// New returns a manager; call Reconcile before serving.
func New(opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	for _, d := range []string{"staging", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(opts.StateDir, d), 0o700); err != nil {
			return nil, err
		}
	}
	return &Manager{opts: opts, log: opts.Logger}, nil
}

// Progress is a step of a long operation.
type Progress struct {
	Phase       string
	Done, Total int64
}

// Op is what a caller asks of an install or update.
type Op struct {
	// AllowUntrusted installs a package whose signer is not trusted, or that is unsigned.
	AllowUntrusted bool
	Progress       func(Progress)
}

func (o Op) progress(phase string, done, total int64) {
	if o.Progress != nil {
		o.Progress(Progress{Phase: phase, Done: done, Total: total})
	}
}

// Result is what an install or update did.
type Result struct {
	Package store.Package
	// Warnings for the user: an untrusted or unsigned package installed on request.
	Warnings []string
}

// stage verifies a package file into a fresh staging directory; accept runs as soon as
// the package's id and version are known.
func (m *Manager) stage(ctx context.Context, r io.Reader, op Op, accept func(id, version string) error) (Verified, []string, error) {
	m.mu.Lock()
	m.seq++
	dir := filepath.Join(m.opts.StateDir, "staging", fmt.Sprintf("%d-%d", time.Now().UnixNano(), m.seq))
	m.mu.Unlock()
	op.progress("receiving and verifying", 0, 0)
	v, err := m.opts.Verify(ctx, r, dir, op.AllowUntrusted, accept, func(done, total int64) { op.progress("receiving and verifying", done, total) })
	if err != nil {
		os.RemoveAll(dir)
		return v, nil, err
	}
	var warn []string
	switch {
	case !v.Signed:
		warn = append(warn, fmt.Sprintf("%s %s is not signed: installed because --allow-untrusted was given", v.ID, v.Version))
	case !v.Trusted:
		warn = append(warn, fmt.Sprintf("%s %s is signed by key %s, which this host does not trust: installed because --allow-untrusted was given", v.ID, v.Version, v.Signer))
	}
	return v, warn, nil
}

// locker takes a package's lock when the verifier says which package it is, and checks
// what the operation needs; release lets go of the lock, if taken.
type locker struct {
	m       *Manager
	unlock  func()
	check   func(id, version string) error
	release func()
}

func (m *Manager) locker(check func(id, version string) error) *locker {
	l := &locker{m: m, check: check}
	l.release = func() {
		if l.unlock != nil {
			l.unlock()
		}
	}
	return l
}

func (l *locker) accept(id, version string) error {
	u, err := l.m.lockPackage(id)
	if err != nil {
		return err
	}
	l.unlock = u
	if _, err := l.m.opts.Records.GetJournal(id); err == nil {
		return fmt.Errorf("an operation on %s did not finish; restart containerd-lite to finish or undo it: %w", id, errdefs.ErrFailedPrecondition)
	}
	return l.check(id, version)
}

// received is a package file verified into staging, its package locked.
type received struct {
	v    Verified
	warn []string
	data []byte
	mf   *manifest.Manifest
	// done lets go of the lock and the staging directory.
	done func()
}

// receive verifies a package file into staging; check runs, under the package's lock, as
// soon as its id and version are known.
func (m *Manager) receive(ctx context.Context, r io.Reader, op Op, check func(id, version string) error) (*received, error) {
	lk := m.locker(check)
	v, warn, err := m.stage(ctx, r, op, lk.accept)
	if err != nil {
		lk.release()
		return nil, err
	}
	rc := &received{v: v, warn: warn, done: func() { os.RemoveAll(v.Dir); lk.release() }}
	if rc.data, rc.mf, err = manifestOf(v); err != nil {
		rc.done()
		return nil, err
	}
	return rc, nil
}

// lockWait is how long an operation waits for a package's lock before it says another
// has it: the waiter holds it for moments (its bookkeeping after an uninstall, a start),
// which must not refuse a user's install; another install or update holds it longer.
const lockWait = time.Second

// lockPackage takes the package's lock, or says another operation has it.
func (m *Manager) lockPackage(id string) (func(), error) {
	if unlock, ok := m.locks.TryLock(id); ok {
		return unlock, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockWait)
	defer cancel()
	unlock, err := m.locks.LockContext(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("another install, update or uninstall of %q is under way: retry when it is done: %w", id, errdefs.ErrAborted)
	}
	return unlock, nil
}

// journal records a step before its effect (and, for tests, may die right there).
func (m *Manager) journal(j *store.Journal, step string) error {
	j.Step = step
	if err := m.opts.Records.PutJournal(*j); err != nil {
		return fmt.Errorf("journal %s of %s at %s: %w", j.Op, j.ID, step, err)
	}
	if m.opts.CrashAt != "" && m.opts.CrashAt == j.Op+":"+step {
		m.log.Warn("test hook: dying at a journaled step", "op", j.Op, "step", step)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return nil
}

// manifestOf reads a staged package's manifest.
func manifestOf(v Verified) ([]byte, *manifest.Manifest, error) {
	data, err := os.ReadFile(filepath.Join(v.Dir, "manifest.yaml"))
	if err != nil {
		return nil, nil, fmt.Errorf("package %s: manifest.yaml: %w: %w", v.ID, err, errdefs.ErrInvalidArgument)
	}
	mf, err := manifest.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("package %s: manifest.yaml: %w: %w", v.ID, err, errdefs.ErrInvalidArgument)
	}
	if mf.ID != v.ID || mf.Version != v.Version {
		return nil, nil, fmt.Errorf("package file says %s %s, its manifest %s %s: %w", v.ID, v.Version, mf.ID, mf.Version, errdefs.ErrInvalidArgument)
	}
	for n, img := range mf.Images {
		if img.OCI == "" {
			return nil, nil, fmt.Errorf("package %s: images.%s is ref %q: a package file carries its images (oci): %w", v.ID, n, img.Ref, errdefs.ErrInvalidArgument)
		}
	}
	return data, mf, nil
}

// importImages imports the manifest's images from the staging directory, each named
// imageName(id, name, version).
func (m *Manager) importImages(ctx context.Context, v Verified, mf *manifest.Manifest, op Op) (map[string]string, error) {
	out := map[string]string{}
	names := slices.Sorted(mapsKeys(mf.Images))
	for i, n := range names {
		phase := fmt.Sprintf("importing image %s (%d of %d)", n, i+1, len(names))
		op.progress(phase, 0, 0)
		d, _, err := m.opts.Images.ImportPackaged(ctx, filepath.Join(v.Dir, "images"), n, imageName(mf.ID, n, mf.Version),
			func(done, total int64) { op.progress(phase, done, total) })
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", n, err)
		}
		out[n] = d
	}
	return out, nil
}

// imageName is the store's name of a package's image: id/image:version ('+' of build
// metadata, which image tags cannot hold, as '_').
func imageName(id, image, version string) string {
	return fmt.Sprintf("%s/%s:%s", id, image, strings.ReplaceAll(version, "+", "_"))
}

// dropNames drops the store's names of a version's images: an image goes with its last
// name when no container uses it.
func (m *Manager) dropNames(ctx context.Context, id, version string, images map[string]string) {
	for n := range images {
		if err := m.opts.Images.Unname(ctx, imageName(id, n, version)); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			m.log.Warn("remove an image name the package no longer uses", "name", imageName(id, n, version), "error", err)
		}
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// readyTimeout is how long a start may take to be ready: the hooks run at it, and the
// daemons' grace.
func readyTimeout(mf *manifest.Manifest, run []manifest.HookRun) time.Duration {
	t := 30 * time.Second
	for _, d := range mf.Daemons {
		if d.Ready != nil {
			t = max(t, d.Ready.Grace.D(30*time.Second))
		}
	}
	for _, r := range run {
		if h := mf.Hooks.Named(r.Name); h != nil {
			t += h.Timeout.D(manifest.DefaultHookTimeout)
		}
	}
	return t + 30*time.Second
}

// startReady starts the package's container with hooks run at this start and waits until
// every daemon is ready.
func (m *Manager) startReady(ctx context.Context, id string, mf *manifest.Manifest, run []manifest.HookRun, op Op) error {
	op.progress("starting", 0, 0)
	defer m.progressSink(id, op)()
	if _, err := m.opts.Containers.StartWith(ctx, id, run); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	d, err := m.opts.Containers.GuestDialer(id)
	if err != nil {
		return err
	}
	for _, r := range run {
		op.progress("running the "+r.Name+" hook", 0, 0)
	}
	op.progress("waiting for the daemons to be ready", 0, 0)
	wctx, cancel := context.WithTimeout(ctx, readyTimeout(mf, run))
	defer cancel()
	return guestclient.WaitReady(wctx, id, d)
}

// failed names the step and the cause.
func failed(op, id, step string, err error) error {
	return fmt.Errorf("%s of %s failed at %s: %w", op, id, step, err)
}

// Get reports an installed package.
func (m *Manager) Get(id string) (store.Package, error) { return m.opts.Records.GetPackage(id) }

// List reports the installed packages.
func (m *Manager) List() ([]store.Package, error) { return m.opts.Records.ListPackages() }
