package diskimg

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"hearth.dev/internal/errdefs"
)

// The ext4 superblock fields a template's copy reads or rewrites (the kernel's
// Documentation/filesystems/ext4/super.rst), as byte offsets into a superblock. All are
// little-endian.
const (
	sbStart = 1024 // the primary superblock's offset in the image
	sbSize  = 1024

	sbInodesCount     = 0x00
	sbBlocksCountLo   = 0x04
	sbFirstDataBlock  = 0x14
	sbLogBlockSize    = 0x18
	sbBlocksPerGroup  = 0x20
	sbMagic           = 0x38
	sbBlockGroupNr    = 0x5A
	sbFeatureCompat   = 0x5C
	sbFeatureIncompat = 0x60
	sbFeatureROCompat = 0x64
	sbUUID            = 0x68
	sbHashSeed        = 0xEC
	sbBlocksCountHi   = 0x150
	sbChecksumType    = 0x175
	sbBackupBGs       = 0x24C
	sbChecksum        = 0x3FC

	ext4Magic           = 0xEF53
	compatSparseSuper2  = 0x200
	compatStableInodes  = 0x800 // the UUID must never change (fscrypt's IV_INO_LBLK keys)
	incompat64Bit       = 0x80
	incompatCsumSeed    = 0x2000
	roCompatSparseSuper = 0x1
	roCompatMetaCsum    = 0x400
	csumTypeCRC32C      = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// superblock is one copy of an image's superblock: the primary, or a backup at the start
// of a block group.
type superblock struct {
	off  int64
	data [sbSize]byte
}

func (s *superblock) u16(off int) uint32 { return uint32(binary.LittleEndian.Uint16(s.data[off:])) }
func (s *superblock) u32(off int) uint32 { return binary.LittleEndian.Uint32(s.data[off:]) }

// checksum is the superblock's metadata_csum checksum as ext4 computes it: crc32c seeded
// with ~0 and not inverted at the end, which is Go's (IEEE-convention) crc32c inverted.
func (s *superblock) checksum() uint32 {
	return ^crc32.Checksum(s.data[:sbChecksum], castagnoli)
}

// superblocks reads and checks every superblock of the image in r, which must be an ext4
// file system of size bytes whose metadata checksums do not depend on its UUID: the
// primary and each backup, in the groups ext4 keeps them in. Any copy that does not agree
// with the primary makes the image unusable as a template.
func superblocks(r io.ReaderAt, size int64) ([]superblock, error) {
	primary, err := readSuperblock(r, sbStart)
	if err != nil {
		return nil, err
	}
	if err := checkPrimary(primary, size); err != nil {
		return nil, err
	}
	blockSize := int64(1024) << primary.u32(sbLogBlockSize)
	first, perGroup := int64(primary.u32(sbFirstDataBlock)), int64(primary.u32(sbBlocksPerGroup))
	groups := (size/blockSize - first + perGroup - 1) / perGroup
	out := []superblock{*primary}
	for g := int64(1); g < groups; g++ {
		if !hasBackup(primary, uint32(g)) {
			continue
		}
		b, err := readSuperblock(r, (g*perGroup+first)*blockSize)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(b.data[sbUUID:sbUUID+16], primary.data[sbUUID:sbUUID+16]) ||
			b.u16(sbBlockGroupNr) != uint32(min(g, 0xFFFF)) {
			return nil, fmt.Errorf("the backup superblock of group %d does not match the primary: %w", g, errdefs.ErrFailedPrecondition)
		}
		out = append(out, *b)
	}
	return out, nil
}

// readSuperblock reads the superblock at off and checks its magic number and checksum.
func readSuperblock(r io.ReaderAt, off int64) (*superblock, error) {
	s := &superblock{off: off}
	if _, err := r.ReadAt(s.data[:], off); err != nil {
		return nil, fmt.Errorf("read the superblock at byte %d: %w", off, err)
	}
	if s.u16(sbMagic) != ext4Magic {
		return nil, fmt.Errorf("no ext4 superblock at byte %d: %w", off, errdefs.ErrFailedPrecondition)
	}
	if s.u32(sbChecksum) != s.checksum() {
		return nil, fmt.Errorf("the superblock at byte %d fails its checksum: %w", off, errdefs.ErrFailedPrecondition)
	}
	return s, nil
}

// checkPrimary checks that the primary superblock describes a file system of size bytes
// that a UUID rewrite alone makes distinct: crc32c metadata checksums seeded from
// s_checksum_seed, and no stable_inodes (which forbids a new UUID).
func checkPrimary(s *superblock, size int64) error {
	switch {
	case s.u32(sbFeatureROCompat)&roCompatMetaCsum == 0 || s.data[sbChecksumType] != csumTypeCRC32C:
		return fmt.Errorf("the file system has no crc32c metadata checksums: %w", errdefs.ErrFailedPrecondition)
	case s.u32(sbFeatureIncompat)&incompatCsumSeed == 0:
		return fmt.Errorf("the file system's checksums are seeded from its UUID (no metadata_csum_seed): %w", errdefs.ErrFailedPrecondition)
	case s.u32(sbFeatureCompat)&compatStableInodes != 0:
		return fmt.Errorf("the file system has stable_inodes, its UUID must not change: %w", errdefs.ErrFailedPrecondition)
	case s.u32(sbLogBlockSize) != 2 || s.u32(sbBlocksPerGroup) == 0:
		return fmt.Errorf("the file system's blocks are not of %d bytes: %w", BlockSize, errdefs.ErrFailedPrecondition)
	}
	blocks := int64(s.u32(sbBlocksCountLo))
	if s.u32(sbFeatureIncompat)&incompat64Bit != 0 {
		blocks |= int64(s.u32(sbBlocksCountHi)) << 32
	}
	if blocks*BlockSize != size {
		return fmt.Errorf("the file system has %d blocks, the image %d bytes: %w", blocks, size, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// hasBackup reports whether block group g (> 0) holds a backup superblock, as e2fsprogs'
// ext2fs_bg_has_super decides: the two groups sparse_super2 names; with sparse_super,
// group 1 and the powers of 3, 5 and 7; otherwise every group.
func hasBackup(s *superblock, g uint32) bool {
	if s.u32(sbFeatureCompat)&compatSparseSuper2 != 0 {
		return g == s.u32(sbBackupBGs) || g == s.u32(sbBackupBGs+4)
	}
	if g == 1 || s.u32(sbFeatureROCompat)&roCompatSparseSuper == 0 {
		return true
	}
	return g%2 == 1 && (powerOf(g, 3) || powerOf(g, 5) || powerOf(g, 7))
}

func powerOf(g, base uint32) bool {
	for g%base == 0 {
		g /= base
	}
	return g == 1
}

// relabel makes the image in w a file system of its own: it writes sbs, the template's
// superblocks, with a new random UUID and directory hash seed and their checksums
// updated, over each copy, as tune2fs -U does for a file system with metadata_csum_seed
// (in-process: tune2fs is an exec of 4-7 ms). The backups are rewritten too: e2fsck
// checks them against the primary and would rewrite them itself, and one restores a
// damaged primary. The hash seed of a new file system can change freely: none of its
// directories is hash-indexed yet.
func relabel(w io.WriterAt, sbs []superblock) error {
	uuid, err := randomUUID()
	if err != nil {
		return err
	}
	seed, err := randomUUID()
	if err != nil {
		return err
	}
	for _, s := range sbs { // s is a copy: the template's superblocks stay as read
		copy(s.data[sbUUID:], uuid[:])
		copy(s.data[sbHashSeed:], seed[:])
		binary.LittleEndian.PutUint32(s.data[sbChecksum:], s.checksum())
		if _, err := w.WriteAt(s.data[:], s.off); err != nil {
			return fmt.Errorf("write the superblock at byte %d: %w", s.off, err)
		}
	}
	return nil
}

// randomUUID is a version 4 UUID, as mke2fs makes for s_uuid and s_hash_seed.
func randomUUID() ([16]byte, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return u, fmt.Errorf("random UUID: %w", err)
	}
	u[6] = u[6]&0x0F | 0x40
	u[8] = u[8]&0x3F | 0x80
	return u, nil
}
