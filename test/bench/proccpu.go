package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcessCPU is the CPU time, in seconds, that the processes sharing the
// machine used: the control plane's (the kube-apiserver and etcd processes
// the benchmark started) and the benchmark's own. The operator's is read
// from its metrics.
type ProcessCPU struct {
	APIServer, Etcd, Benchmark float64
}

// Sub returns the CPU time used since before.
func (p ProcessCPU) Sub(before ProcessCPU) ProcessCPU {
	return ProcessCPU{APIServer: p.APIServer - before.APIServer, Etcd: p.Etcd - before.Etcd, Benchmark: p.Benchmark - before.Benchmark}
}

func (p ProcessCPU) String() string {
	return fmt.Sprintf("%.1f / %.1f / %.1f s", p.APIServer, p.Etcd, p.Benchmark)
}

// clockTicks is Linux's USER_HZ, the unit of /proc/<pid>/stat times.
const clockTicks = 100

// readProcessCPU reads /proc: utime plus stime (of all threads), for this
// process and its children named kube-apiserver and etcd.
func readProcessCPU() (ProcessCPU, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return ProcessCPU{}, err
	}
	self := os.Getpid()
	var out ProcessCPU
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, parent, seconds, err := processTimes(pid)
		if err != nil {
			continue // gone meanwhile
		}
		switch {
		case pid == self:
			out.Benchmark += seconds
		case parent != self:
		case comm == "kube-apiserver":
			out.APIServer += seconds
		case comm == "etcd":
			out.Etcd += seconds
		}
	}
	return out, nil
}

// processTimes returns a process's command name, its parent and its user
// plus system CPU seconds.
func processTimes(pid int) (string, int, float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, err
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	text := string(data)
	open, closing := strings.IndexByte(text, '('), strings.LastIndexByte(text, ')')
	if open < 0 || closing < open {
		return "", 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(text[closing+1:])
	// fields[0] is the state (field 3), fields[1] the parent (field 4);
	// utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return "", 0, 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	parent, err0 := strconv.Atoi(fields[1])
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err0 != nil || err1 != nil || err2 != nil {
		return "", 0, 0, fmt.Errorf("/proc/%d/stat: unreadable fields", pid)
	}
	return text[open+1 : closing], parent, (utime + stime) / clockTicks, nil
}

// processCPUSince returns the CPU time used since before.
func processCPUSince(before ProcessCPU) (ProcessCPU, error) {
	now, err := readProcessCPU()
	return now.Sub(before), err
}
