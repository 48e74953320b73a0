package backup

import (
	"context"
	"fmt"
	"strings"

	"github.com/kopia/kopia/snapshot/snapshotfs"
	"golang.org/x/sys/unix"
)

// maxVerifyErrors bounds the errors Verify collects before it stops.
const maxVerifyErrors = 10

// Verify reads everything a restore of snapshot id needs, and returns the snapshot's
// Meta: the repository's format and indexes, the snapshot's manifest, hearth.json, every
// directory and every byte of every file and symlink, each decrypted and authenticated.
// It reads through a connection of its own, opened for it, so that nothing comes from
// what this Repo has read or written before. A corrupt, truncated or missing piece is
// ErrDamaged, naming the first paths it hit.
func (r *Repo) Verify(ctx context.Context, id string) (Meta, error) {
	if err := r.check(); err != nil {
		return Meta{}, err
	}
	unlock, err := r.lock(ctx, unix.LOCK_SH)
	if err != nil {
		return Meta{}, err
	}
	defer unlock()
	rep, err := r.connect(ctx)
	if err != nil {
		return Meta{}, err
	}
	defer rep.Close(ctx)
	snap, err := r.openSnapshot(ctx, rep, id)
	if err != nil {
		return Meta{}, err
	}
	what := "verify snapshot " + id + " of " + snap.man.Source.Path
	for _, name := range snap.volumeNames() {
		if _, _, err := snap.volume(ctx, rep, name); err != nil {
			return Meta{}, classify(err, r.dir, what)
		}
	}
	v := snapshotfs.NewVerifier(ctx, rep, snapshotfs.VerifierOptions{
		VerifyFilesPercent: 100,
		Parallelism:        r.opts.Parallel,
		MaxErrors:          maxVerifyErrors,
	})
	res, err := v.InParallel(ctx, func(tw *snapshotfs.TreeWalker) error {
		return tw.Process(ctx, snap.root, "")
	})
	if ctx.Err() != nil {
		return Meta{}, fmt.Errorf("%s: %w", what, ctx.Err())
	}
	if err != nil || res.ErrorCount > 0 {
		if len(res.Errors) == 0 {
			return Meta{}, classify(err, r.dir, what)
		}
		// The first error wrapped (for its kind), the others named.
		return Meta{}, classify(fmt.Errorf("%d pieces unreadable (other snapshots may be whole: verify them): %w%s",
			res.ErrorCount, res.Errors[0], others(res.ErrorStrings[1:])), r.dir, what)
	}
	return snap.idx.Meta, nil
}

func others(msgs []string) string {
	if len(msgs) == 0 {
		return ""
	}
	return "; and " + strings.Join(msgs, "; ")
}
