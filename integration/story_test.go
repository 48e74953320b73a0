package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// psql runs a query in hello-pg's database and returns its rows (unaligned, one a line).
func (l *lab) psql(t *testing.T, query string) []string {
	t.Helper()
	out, err := hearthctl(t, l.runDir, "exec", "hello-pg", "db", "--", "psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", query)
	if err != nil {
		t.Fatalf("psql %q: %v", query, err)
	}
	var rows []string
	for _, r := range strings.Split(strings.TrimSpace(out), "\n") {
		if r != "" {
			rows = append(rows, r)
		}
	}
	return rows
}

// TestPackageStory is the package story with hello-pg (Postgres and an app): install 1.0.0
// and the app writes rows; update to 2.0.0 and the rows are migrated; update to 3.0.0,
// whose migration fails, and the update rolls back by itself: 2.0.0 runs, the rows are
// intact, and the error names the hook and quotes its output. Then a backup; new writes;
// a second backup writes less than 5% of the first; uninstall --purge and restore: the
// rows are back; the first snapshot restored on top of the running package gives exactly
// the rows it held.
func TestPackageStory(t *testing.T) {
	l, ex := installLab(t, "busybox", "hello-pg")
	pkg := func(v string) string { return filepath.Join(ex, "hello-pg-"+v+".hpkg") }
	if _, err := hearthctl(t, l.runDir, "--timeout", "10m", "install", pkg("1.0.0")); err != nil {
		t.Fatal(err)
	}
	// The app writes a row at each start.
	if _, err := hearthctl(t, l.runDir, "restart", "hello-pg"); err != nil {
		t.Fatal(err)
	}
	l.waitDaemons(t, "hello-pg", "ready", time.Minute, settledJobs)
	rows1 := l.psql(t, "SELECT at FROM boots ORDER BY at")
	if len(rows1) < 2 {
		t.Fatalf("after two starts of 1.0.0, rows: %v", rows1)
	}

	if _, err := hearthctl(t, l.runDir, "--timeout", "10m", "update", pkg("2.0.0")); err != nil {
		t.Fatal(err)
	}
	l.packageIs(t, "hello-pg", "2.0.0")
	migrated := l.psql(t, "SELECT at || ' ' || coalesce(note, '-') FROM boots ORDER BY at")
	for i, r := range rows1 {
		if i >= len(migrated) || migrated[i] != r+" migrated from 1.0.0" {
			t.Fatalf("rows after the update to 2.0.0:\n%s\nwant each of\n%s\nwith 'migrated from 1.0.0'", strings.Join(migrated, "\n"), strings.Join(rows1, "\n"))
		}
	}
	rows2 := l.psql(t, "SELECT at || ' ' || coalesce(note, '-') FROM boots ORDER BY at")

	_, err := hearthctl(t, l.runDir, "--timeout", "10m", "update", pkg("3.0.0"))
	if err == nil {
		t.Fatal("the update to 3.0.0 succeeded; its migration fails")
	}
	t.Logf("the update to 3.0.0 said: %v", err)
	for _, want := range []string{"hook migrate failed", "exit status 3", "cannot be converted", "rolled back", "2.0.0 runs again"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the failed update's error lacks %q:\n%v", want, err)
		}
	}
	l.packageIs(t, "hello-pg", "2.0.0")
	if got := l.psql(t, "SELECT at || ' ' || coalesce(note, '-') FROM boots ORDER BY at"); len(got) < len(rows2) || strings.Join(got[:len(rows2)], "\n") != strings.Join(rows2, "\n") {
		t.Fatalf("rows after the rollback:\n%s\nwant them to begin with\n%s", strings.Join(got, "\n"), strings.Join(rows2, "\n"))
	}
	if out, _ := hearthctl(t, l.runDir, "image", "ls"); strings.Contains(out, ":3.0.0") || strings.Contains(out, ":1.0.0") {
		t.Errorf("images of 1.0.0 or 3.0.0 stayed:\n%s", out)
	}

	// Backups.
	repoDir := filepath.Join(l.dir, "backups")
	pass := filepath.Join(l.dir, "pass")
	must(t, os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600))
	backupOnce := func() *containerv1.Snapshot {
		t.Helper()
		s := &containerv1.Snapshot{}
		hearthctlJSON(t, l.runDir, s, "--timeout", "10m", "backup", "hello-pg", "--to", repoDir, "--passphrase-file", pass)
		t.Logf("snapshot %s: %d files, %d bytes, %d unchanged, %d bytes written", s.GetId(), s.GetFiles(), s.GetBytes(), s.GetUnchanged(), s.GetStoredBytes())
		return s
	}
	rowsA := l.psql(t, "SELECT at FROM boots ORDER BY at")
	first := backupOnce()
	// New writes: a start writes a row.
	if _, err := hearthctl(t, l.runDir, "restart", "hello-pg"); err != nil {
		t.Fatal(err)
	}
	l.waitDaemons(t, "hello-pg", "ready", time.Minute, settledJobs)
	rowsB := l.psql(t, "SELECT at FROM boots ORDER BY at")
	if len(rowsB) != len(rowsA)+1 {
		t.Fatalf("a restart wrote %d rows, want 1", len(rowsB)-len(rowsA))
	}
	second := backupOnce()
	if second.GetStoredBytes()*20 >= first.GetStoredBytes() {
		t.Errorf("the second backup wrote %d bytes, the first %d: want less than 5%%", second.GetStoredBytes(), first.GetStoredBytes())
	}
	ls := &containerv1.ListBackupsResponse{}
	hearthctlJSON(t, l.runDir, ls, "backup", "ls", "hello-pg", "--to", repoDir, "--passphrase-file", pass)
	if len(ls.GetSnapshots()) != 2 {
		t.Fatalf("backup ls: %v", ls)
	}

	// Uninstall --purge, restore from the newest snapshot with the package file.
	if _, err := hearthctl(t, l.runDir, "uninstall", "--purge", "hello-pg"); err != nil {
		t.Fatal(err)
	}
	started := time.Now().UTC()
	if _, err := hearthctl(t, l.runDir, "--timeout", "10m", "restore", "hello-pg", "--from", repoDir, "--passphrase-file", pass, "--package", pkg("2.0.0")); err != nil {
		t.Fatal(err)
	}
	l.packageIs(t, "hello-pg", "2.0.0")
	if got := rowsBefore(t, l.psql(t, "SELECT at FROM boots ORDER BY at"), started); strings.Join(got, "\n") != strings.Join(rowsB, "\n") {
		t.Fatalf("rows after uninstall --purge and restore:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(rowsB, "\n"))
	}

	// The first snapshot, restored on top of the running package: exactly its rows.
	started = time.Now().UTC()
	if _, err := hearthctl(t, l.runDir, "--timeout", "10m", "restore", "hello-pg", "--from", repoDir, "--passphrase-file", pass, "--snapshot", first.GetId()); err != nil {
		t.Fatal(err)
	}
	l.packageIs(t, "hello-pg", "2.0.0")
	if got := rowsBefore(t, l.psql(t, "SELECT at FROM boots ORDER BY at"), started); strings.Join(got, "\n") != strings.Join(rowsA, "\n") {
		t.Fatalf("rows after restoring the first snapshot:\n%s\nwant exactly\n%s", strings.Join(got, "\n"), strings.Join(rowsA, "\n"))
	}

	// A wrong password changes nothing.
	bad := filepath.Join(l.dir, "bad")
	must(t, os.WriteFile(bad, []byte("wrong"), 0o600))
	if _, err := hearthctl(t, l.runDir, "restore", "hello-pg", "--from", repoDir, "--passphrase-file", bad); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("restore with a wrong password: %v", err)
	}
	l.packageIs(t, "hello-pg", "2.0.0")
}

// rowsBefore keeps the rows (boot times) before t0: the app writes a row at each start,
// so a restore's own start adds one.
func rowsBefore(t *testing.T, rows []string, t0 time.Time) []string {
	t.Helper()
	var out []string
	for _, r := range rows {
		at, err := time.Parse(time.RFC3339Nano, r)
		if err != nil {
			t.Fatalf("row %q: %v", r, err)
		}
		if at.Before(t0) {
			out = append(out, r)
		}
	}
	return out
}
