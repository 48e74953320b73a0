// Package limits turns a container's asked-for limits into cgroup settings: the host
// policy's defaults fill what is unset and its caps lower what is too high; the LXC
// configuration lines suit the cgroup version the host runs; and what the cgroup holds is
// read back in the same units.
package limits

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"

	"hearth.dev/services/containerd-lite/internal/store"
)

// Policy caps every container. Zero fields take DefaultPolicy's.
type Policy struct {
	MaxMemoryBytes int64
	MaxCPUs        float64
	MaxPids        int64
	// MaxDiskBytes caps a package's disk; DefaultDiskBytes is what it gets when its
	// manifest asks for no size.
	MaxDiskBytes     int64
	DefaultDiskBytes int64
}

// DefaultDisk is a package's disk when neither it nor the host says.
const DefaultDisk = 8 << 30

// DefaultPolicy: half the host's memory, all its CPUs, 4096 processes, disks of 8Gi and
// at most 256Gi (disks are sparse: they take the host's space only as they fill).
func DefaultPolicy() Policy {
	return Policy{MaxMemoryBytes: hostMemory() / 2, MaxCPUs: float64(runtime.NumCPU()), MaxPids: 4096, MaxDiskBytes: 256 << 30, DefaultDiskBytes: DefaultDisk}
}

func hostMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 1 << 30
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 1 << 30
}

// Apply fills unset limits with the caps and lowers limits above them; notes say what changed.
func (p Policy) Apply(l store.Limits) (store.Limits, []string, error) {
	d := DefaultPolicy()
	if p.MaxMemoryBytes == 0 {
		p.MaxMemoryBytes = d.MaxMemoryBytes
	}
	if p.MaxCPUs == 0 {
		p.MaxCPUs = d.MaxCPUs
	}
	if p.MaxPids == 0 {
		p.MaxPids = d.MaxPids
	}
	if p.MaxDiskBytes == 0 {
		p.MaxDiskBytes = d.MaxDiskBytes
	}
	if p.DefaultDiskBytes == 0 {
		p.DefaultDiskBytes = d.DefaultDiskBytes
	}
	if l.DiskBytes < 0 {
		return l, nil, fmt.Errorf("disk limit %d: must be positive, or zero for the host's default", l.DiskBytes)
	}
	if l.DiskBytes > 0 && l.DiskBytes < MinDiskBytes {
		return l, nil, fmt.Errorf("disk limit %d bytes is below 32Mi, too little for a package's layers and logs", l.DiskBytes)
	}
	if l.MemoryBytes < 0 || l.CPUs < 0 || l.Pids < 0 || math.IsNaN(l.CPUs) || math.IsInf(l.CPUs, 0) {
		return l, nil, fmt.Errorf("limits %+v: memory, cpus and pids must be positive, or zero for the host's default", l)
	}
	if l.MemoryBytes > 0 && l.MemoryBytes < 4<<20 {
		return l, nil, fmt.Errorf("memory limit %d bytes is below 4Mi, too little to start a container", l.MemoryBytes)
	}
	if l.Pids > 0 && l.Pids < 8 {
		return l, nil, fmt.Errorf("pids limit %d is below 8, too few to start a container", l.Pids)
	}
	if l.CPUs > 0 && l.CPUs < 0.01 {
		return l, nil, fmt.Errorf("cpus %g is below 0.01", l.CPUs)
	}
	var notes []string
	capInt := func(what string, v *int64, max int64) {
		switch {
		case *v == 0:
			*v = max
		case *v > max:
			notes = append(notes, fmt.Sprintf("%s lowered from %d to the host's cap %d", what, *v, max))
			*v = max
		}
	}
	capInt("memory", &l.MemoryBytes, p.MaxMemoryBytes)
	capInt("pids", &l.Pids, p.MaxPids)
	if l.DiskBytes == 0 {
		l.DiskBytes = min(p.DefaultDiskBytes, p.MaxDiskBytes)
	}
	capInt("disk", &l.DiskBytes, p.MaxDiskBytes)
	switch {
	case l.CPUs == 0:
		l.CPUs = p.MaxCPUs
	case l.CPUs > p.MaxCPUs:
		notes = append(notes, fmt.Sprintf("cpus lowered from %g to the host's cap %g", l.CPUs, p.MaxCPUs))
		l.CPUs = p.MaxCPUs
	}
	return l, notes, nil
}

// MinDiskBytes is the smallest disk a package may have.
const MinDiskBytes = 32 << 20

// CPUPeriod is the CFS period the CPU quota is expressed in (microseconds).
const CPUPeriod = 100000

// CgroupV2 reports whether the host runs the unified cgroup hierarchy only.
func CgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// ConfigLines returns the LXC configuration items for the limits.
func ConfigLines(l store.Limits, v2 bool) [][2]string {
	quota := int64(math.Round(l.CPUs * CPUPeriod))
	if v2 {
		return [][2]string{
			{"lxc.cgroup2.memory.max", strconv.FormatInt(l.MemoryBytes, 10)},
			{"lxc.cgroup2.pids.max", strconv.FormatInt(l.Pids, 10)},
			{"lxc.cgroup2.cpu.max", fmt.Sprintf("%d %d", quota, CPUPeriod)},
		}
	}
	return [][2]string{
		{"lxc.cgroup.memory.limit_in_bytes", strconv.FormatInt(l.MemoryBytes, 10)},
		{"lxc.cgroup.pids.max", strconv.FormatInt(l.Pids, 10)},
		{"lxc.cgroup.cpu.cfs_period_us", strconv.Itoa(CPUPeriod)},
		{"lxc.cgroup.cpu.cfs_quota_us", strconv.FormatInt(quota, 10)},
	}
}

// Reader reads one cgroup file of a running container ("memory.max", "pids.current").
type Reader func(key string) (string, error)

// ReadBack returns the limits the cgroup holds and its usage.
func ReadBack(read Reader, v2 bool) (limits store.Limits, usage Usage, err error) {
	num := func(key string) (int64, error) {
		s, err := read(key)
		if err != nil {
			return 0, err
		}
		s = strings.TrimSpace(s)
		if s == "max" {
			return -1, nil
		}
		return strconv.ParseInt(s, 10, 64)
	}
	if v2 {
		if limits.MemoryBytes, err = num("memory.max"); err != nil {
			return
		}
		if usage.MemoryBytes, err = num("memory.current"); err != nil {
			return
		}
		var cpu string
		if cpu, err = read("cpu.max"); err != nil {
			return
		}
		if f := strings.Fields(cpu); len(f) == 2 && f[0] != "max" {
			q, _ := strconv.ParseFloat(f[0], 64)
			per, _ := strconv.ParseFloat(f[1], 64)
			if per > 0 {
				limits.CPUs = q / per
			}
		}
		var stat string
		if stat, err = read("cpu.stat"); err != nil {
			return
		}
		for _, line := range strings.Split(stat, "\n") {
			if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
				us, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				usage.CPUSeconds = us / 1e6
			}
		}
	} else {
		if limits.MemoryBytes, err = num("memory.limit_in_bytes"); err != nil {
			return
		}
		if usage.MemoryBytes, err = num("memory.usage_in_bytes"); err != nil {
			return
		}
		var q, per int64
		if q, err = num("cpu.cfs_quota_us"); err != nil {
			return
		}
		if per, err = num("cpu.cfs_period_us"); err != nil {
			return
		}
		if q > 0 && per > 0 {
			limits.CPUs = float64(q) / float64(per)
		}
		var ns int64
		if ns, err = num("cpuacct.usage"); err != nil {
			return
		}
		usage.CPUSeconds = float64(ns) / 1e9
	}
	if limits.Pids, err = num("pids.max"); err != nil {
		return
	}
	usage.Pids, err = num("pids.current")
	return
}

// Usage is what a container's cgroup uses now.
type Usage struct {
	MemoryBytes int64
	Pids        int64
	CPUSeconds  float64
}
