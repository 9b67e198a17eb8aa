package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// records is what the harness created on the host. Each entry is written
// before the object is created, so a run that dies at any point leaves
// records that cover everything it made.
type records struct {
	NetNS string `json:"netns,omitempty"`
	// NetNSDir is true when `ip netns add` made /run/netns (and its
	// bind mount) on this host.
	NetNSDir   bool     `json:"netnsDir,omitempty"`
	Links      []string `json:"links,omitempty"`
	Cgroups    []string `json:"cgroups,omitempty"`
	Dirs       []string `json:"dirs,omitempty"`
	Supervisor *process `json:"supervisor,omitempty"`
}

// process identifies a process by PID and start time, so that a recycled
// PID is never signalled.
type process struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

func (c Config) loadRecords() (*records, error) {
	data, err := os.ReadFile(c.recordsFile())
	if err != nil {
		return nil, err
	}
	r := &records{}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("reading %s: %w", c.recordsFile(), err)
	}
	return r, nil
}

func (c Config) saveRecords(r *records) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := c.recordsFile() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.recordsFile())
}

// startTime is field 22 of /proc/<pid>/stat, or 0 when the process is gone.
func startTime(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after it follow ')'.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(fields[19], 10, 64)
	return v
}

func (p *process) alive() bool { return p != nil && p.Start != 0 && startTime(p.PID) == p.Start }

// teardown removes everything in the records, in the reverse order of
// creation, then the state directory. It keeps going after errors and
// returns them all.
func (c Config) teardown(r *records, logf func(string, ...any)) error {
	var errs []error
	if r.Supervisor.alive() {
		logf("stopping the cluster (supervisor PID %d)", r.Supervisor.PID)
		_ = syscall.Kill(r.Supervisor.PID, syscall.SIGTERM)
		deadline := time.Now().Add(45 * time.Second)
		for r.Supervisor.alive() && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if r.Supervisor.alive() {
			_ = syscall.Kill(r.Supervisor.PID, syscall.SIGKILL)
		}
	}
	// Pods, shims and components that outlived the supervisor.
	if err := killCgroups(r.Cgroups); err != nil {
		errs = append(errs, err)
	}
	if r.NetNS != "" && exists(filepath.Join("/run/netns", r.NetNS)) {
		if out, err := exec.Command("ip", "netns", "delete", r.NetNS).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %w: %s", r.NetNS, err, out))
		}
	}
	for _, l := range r.Links {
		if linkExists(l) {
			if out, err := exec.Command("ip", "link", "delete", l).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip link delete %s: %w: %s", l, err, out))
			}
		}
	}
	if err := removeCgroups(r.Cgroups); err != nil {
		errs = append(errs, err)
	}
	for i := len(r.Dirs) - 1; i >= 0; i-- {
		if err := os.Remove(r.Dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if r.NetNSDir {
		if err := removeNetNSDir(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		errs = append(errs, c.removeState())
	}
	return errors.Join(errs...)
}

// removeState removes the state directory, the records last: a removal that
// fails half-way leaves records that still name what is left.
func (c Config) removeState() error {
	entries, err := os.ReadDir(c.StateDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if e.Name() == filepath.Base(c.recordsFile()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(c.StateDir, e.Name())); err != nil {
			return err
		}
	}
	if err := os.Remove(c.recordsFile()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Remove(c.StateDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// removeNetNSDir undoes what the first `ip netns add` on a host does (the
// directory /run/netns, bind-mounted over itself), once no namespace is left
// in it.
func removeNetNSDir() error {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		return err
	}
	if len(entries) > 0 {
		return nil
	}
	_ = syscall.Unmount("/run/netns", syscall.MNT_DETACH)
	if err := os.Remove("/run/netns"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// cgroupPIDs lists the processes in a cgroup directory and its children.
func cgroupPIDs(dir string) []int {
	var pids []int
	// A directory that went away while walking holds no processes: go on.
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil //nolint:nilerr // see above
		}
		data, _ := os.ReadFile(path)
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// killCgroups kills every process in the cgroup directories. The freezer
// cgroup is frozen while the PIDs are read and signalled, so that none of
// them can exit and be reused by a process elsewhere in between.
func killCgroups(dirs []string) error {
	var freezer string
	for _, d := range dirs {
		if exists(filepath.Join(d, "freezer.state")) {
			freezer = filepath.Join(d, "freezer.state")
		}
	}
	if freezer != "" {
		_ = os.WriteFile(freezer, []byte("FROZEN"), 0o644)
		defer func() { _ = os.WriteFile(freezer, []byte("THAWED"), 0o644) }()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var left []int
		for _, d := range dirs {
			left = append(left, cgroupPIDs(d)...)
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still run in the cluster's cgroups", left)
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		// Frozen processes die of SIGKILL once thawed.
		if freezer != "" {
			_ = os.WriteFile(freezer, []byte("THAWED"), 0o644)
			time.Sleep(100 * time.Millisecond)
			_ = os.WriteFile(freezer, []byte("FROZEN"), 0o644)
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// KillAll sends SIGKILL to every process of the cluster, the supervisor
// included, and leaves everything else in place, as a killed run or a
// stopped machine would.
func (c Config) KillAll() error {
	dirs, err := c.cgroupDirs()
	if err != nil {
		return err
	}
	return killCgroups(dirs)
}

// removeCgroups removes the cgroup directories, children first.
func removeCgroups(dirs []string) error {
	var all []string
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				all = append(all, path)
			}
			return nil
		})
	}
	sort.Slice(all, func(i, j int) bool { return len(all[i]) > len(all[j]) })
	var errs []error
	for _, d := range all {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", "dev", name).Run() == nil
}

// cgroupHierarchies lists the mounted cgroup hierarchies (v1 and v2).
func cgroupHierarchies() ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, " - ", 2)
		if len(parts) != 2 {
			continue
		}
		fstype := strings.Fields(parts[1])
		pre := strings.Fields(parts[0])
		if len(fstype) > 0 && (fstype[0] == "cgroup" || fstype[0] == "cgroup2") && len(pre) > 4 {
			out = append(out, pre[4])
		}
	}
	return out, nil
}

func (c Config) cgroupDirs() ([]string, error) {
	hs, err := cgroupHierarchies()
	if err != nil {
		return nil, err
	}
	dirs := make([]string, 0, len(hs))
	for _, h := range hs {
		dirs = append(dirs, filepath.Join(h, c.CgroupRoot()))
	}
	return dirs, nil
}

// hostRoutes lists the destinations of the host's IPv4 routes.
func hostRoutes() ([]netip.Prefix, error) {
	out, err := exec.Command("ip", "-4", "-j", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("ip route: %w", err)
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, err
	}
	var ps []netip.Prefix
	for _, r := range routes {
		if r.Dst == "default" || r.Dst == "" {
			continue
		}
		if !strings.Contains(r.Dst, "/") {
			r.Dst += "/32"
		}
		if p, err := netip.ParsePrefix(r.Dst); err == nil {
			ps = append(ps, p)
		}
	}
	// Local addresses count too: an interface may hold an address in our
	// subnets without a route of its own in the main table.
	addrs, err := exec.Command("ip", "-4", "-j", "addr", "show").Output()
	if err == nil {
		var links []struct {
			AddrInfo []struct {
				Local     string `json:"local"`
				PrefixLen int    `json:"prefixlen"`
			} `json:"addr_info"`
		}
		if json.Unmarshal(addrs, &links) == nil {
			for _, l := range links {
				for _, a := range l.AddrInfo {
					if ad, err := netip.ParseAddr(a.Local); err == nil {
						ps = append(ps, netip.PrefixFrom(ad, a.PrefixLen).Masked())
					}
				}
			}
		}
	}
	return ps, nil
}

// Occupied lists what of the cluster's names and subnets is in use on the
// host. Run after the harness removed its own leftovers, anything listed
// belongs to someone else.
func (c Config) Occupied() ([]string, error) {
	var found []string
	if exists(filepath.Join("/run/netns", c.NetNS())) {
		found = append(found, "network namespace "+c.NetNS())
	}
	if linkExists(c.HostLink()) {
		found = append(found, "link "+c.HostLink())
	}
	dirs, err := c.cgroupDirs()
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if exists(d) {
			found = append(found, "cgroup "+d)
		}
	}
	routes, err := hostRoutes()
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		for _, ours := range []netip.Prefix{c.LinkNet, c.PodNet, c.ServiceNet} {
			if r.Overlaps(ours) {
				found = append(found, fmt.Sprintf("route or address %s overlaps %s", r, ours))
			}
		}
	}
	return found, nil
}

// Leftovers lists anything of the cluster still on the host: its names and
// subnets, its state directory, mounts and processes naming it. Empty after
// a clean teardown.
func (c Config) Leftovers() ([]string, error) {
	found, err := c.Occupied()
	if err != nil {
		return nil, err
	}
	if exists(c.StateDir) {
		found = append(found, "directory "+c.StateDir)
	}
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if names(line, c.StateDir) {
				found = append(found, "mount "+line)
			}
		}
	}
	ancestors := ancestors()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if ancestors[filepath.Base(filepath.Dir(p))] {
			// The shell or make that runs this check names the state
			// directory too.
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(data), "\x00", " ")
		if names(cmd, c.StateDir) {
			found = append(found, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(p)), cmd))
		}
	}
	return found, nil
}

// ancestors lists the PIDs of this process and its ancestors.
func ancestors() map[string]bool {
	out := map[string]bool{}
	for pid := strconv.Itoa(os.Getpid()); pid != "0" && pid != "" && !out[pid]; {
		out[pid] = true
		data, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			break
		}
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 {
			break
		}
		pid = fields[1]
	}
	return out
}

// names reports whether text names path or something beneath it: path
// followed by "/", a space or the end, so that /var/lib/x does not match
// /var/lib/x-test.
func names(text, path string) bool {
	for rest := text; ; {
		i := strings.Index(rest, path)
		if i < 0 {
			return false
		}
		rest = rest[i+len(path):]
		if rest == "" || rest[0] == '/' || rest[0] == ' ' || rest[0] == '\n' {
			return true
		}
	}
}

// HostPathsPresent reports which of HostPaths exist, for comparing the
// host before and after a run.
func HostPathsPresent() map[string]bool {
	present := map[string]bool{}
	for _, d := range HostPaths {
		present[d] = exists(d)
	}
	return present
}
