package limits

import (
	"fmt"
	"strings"
	"testing"

	"hearth.dev/services/containerd-lite/internal/store"
)

func TestApply(t *testing.T) {
	p := Policy{MaxMemoryBytes: 1 << 30, MaxCPUs: 2, MaxPids: 1000, MaxDiskBytes: 4 << 30, DefaultDiskBytes: 1 << 30}
	for _, tc := range []struct {
		name  string
		in    store.Limits
		want  store.Limits
		notes int
		err   string
	}{
		{"defaults", store.Limits{}, store.Limits{MemoryBytes: 1 << 30, CPUs: 2, Pids: 1000, DiskBytes: 1 << 30}, 0, ""},
		{"within", store.Limits{MemoryBytes: 512 << 20, CPUs: 1.5, Pids: 512, DiskBytes: 64 << 20}, store.Limits{MemoryBytes: 512 << 20, CPUs: 1.5, Pids: 512, DiskBytes: 64 << 20}, 0, ""},
		{"capped", store.Limits{MemoryBytes: 8 << 30, CPUs: 16, Pids: 100000, DiskBytes: 1 << 40}, store.Limits{MemoryBytes: 1 << 30, CPUs: 2, Pids: 1000, DiskBytes: 4 << 30}, 4, ""},
		{"tiny disk", store.Limits{DiskBytes: 1 << 20}, store.Limits{}, 0, "below 32Mi"},
		{"negative disk", store.Limits{DiskBytes: -5}, store.Limits{}, 0, "must be positive"},
		{"negative", store.Limits{Pids: -1}, store.Limits{}, 0, "must be positive"},
		{"tiny memory", store.Limits{MemoryBytes: 1000}, store.Limits{}, 0, "below 4Mi"},
		{"tiny pids", store.Limits{Pids: 2}, store.Limits{}, 0, "too few"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, notes, err := p.Apply(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || len(notes) != tc.notes {
				t.Fatalf("Apply = %+v %v %v; want %+v with %d notes", got, notes, err, tc.want, tc.notes)
			}
		})
	}
}

func TestConfigLinesAndReadBack(t *testing.T) {
	l := store.Limits{MemoryBytes: 512 << 20, CPUs: 1.5, Pids: 256}
	for _, v2 := range []bool{false, true} {
		files := map[string]string{}
		for _, kv := range ConfigLines(l, v2) {
			key := kv[0][strings.LastIndex(kv[0], ".cgroup")+len(".cgroup"):]
			key = strings.TrimPrefix(strings.TrimPrefix(key, "2"), ".")
			files[key] = kv[1]
		}
		files["memory.current"], files["memory.usage_in_bytes"] = "1000", "1000"
		files["pids.current"], files["cpuacct.usage"] = "3", "2500000000"
		files["cpu.stat"] = "usage_usec 2500000\nuser_usec 1"
		got, usage, err := ReadBack(func(k string) (string, error) {
			v, ok := files[k]
			if !ok {
				return "", fmt.Errorf("no %s", k)
			}
			return v, nil
		}, v2)
		if err != nil || got != l || usage != (Usage{MemoryBytes: 1000, Pids: 3, CPUSeconds: 2.5}) {
			t.Errorf("v2=%v: ReadBack = %+v %+v %v; want %+v", v2, got, usage, err, l)
		}
	}
}
