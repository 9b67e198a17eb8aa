package images

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// buildPause builds this module's pause command, the smallest binary at hand.
func buildPause(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pause")
	if err := Build("..", "./cmd/pause", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestBuildMakesAStaticLinuxBinary(t *testing.T) {
	bin := buildPause(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("machine %v, want x86-64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has an ELF interpreter: not static")
		}
	}
	if syms, _ := f.Symbols(); len(syms) != 0 {
		t.Errorf("binary keeps %d symbols; -s -w not applied", len(syms))
	}
}

func TestBuildReportsCompilerOutput(t *testing.T) {
	err := Build("..", "./does/not/exist", filepath.Join(t.TempDir(), "x"))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("does/not/exist")) {
		t.Fatalf("err = %v", err)
	}
}

func TestPackRoundTrip(t *testing.T) {
	bin := buildPause(t)
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out", "manager.tar")
	if err := Pack(bin, Operator, out, Options{Path: "/manager", User: "65532:65532"}); err != nil {
		t.Fatal(err)
	}

	tag, err := name.NewTag(Operator)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("image %s not in tarball: %v", Operator, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
	c := cfg.Config
	if !slices.Equal(c.Entrypoint, []string{"/manager"}) || c.User != "65532:65532" || c.WorkingDir != "/" ||
		!slices.Equal(c.Env, []string{DefaultPath}) || len(c.Cmd) != 0 {
		t.Errorf("config %+v", c)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 {
		t.Fatalf("%d layers, %d diff IDs; want 1", len(layers), len(cfg.RootFS.DiffIDs))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Name != "manager" || hdr.Typeflag != tar.TypeReg || hdr.Mode != 0o755 || hdr.Uid != 0 || hdr.Gid != 0 {
		t.Errorf("entry %q type %c mode %o owner %d:%d", hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid)
	}
	got, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("layer holds %d bytes that differ from the %d-byte binary", len(got), len(want))
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("layer has more than one entry (next: %v)", err)
	}
}

func TestPackHonoursEntrypoint(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "p.tar")
	if err := Pack(bin, Probe, out, Options{Path: "/probe", User: "65532", Entrypoint: []string{"/probe", "watch"}}); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(Probe)
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/probe", "watch"}) || cfg.Config.User != "65532" {
		t.Errorf("config %+v", cfg.Config)
	}
}

func TestPackRejectsBadInput(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "x.tar")
	for _, c := range []struct{ ref, path string }{
		{Pause, "pause"},
		{Pause, "/"},
		{Pause, "/a/../pause"},
		{"isolator.local/pause", "/pause"}, // no tag
		{"Not A Ref", "/pause"},
	} {
		if err := Pack(bin, c.ref, out, Options{Path: c.path}); err == nil {
			t.Errorf("Pack(%q, path %q) succeeded", c.ref, c.path)
		}
	}
	if err := Pack(filepath.Join(t.TempDir(), "missing"), Pause, out, Options{Path: "/pause"}); err == nil {
		t.Error("Pack of a missing binary succeeded")
	}
}

func TestRefs(t *testing.T) {
	for _, ref := range []string{Pause, Operator, TestServer, Probe} {
		if _, err := name.NewTag(ref, name.StrictValidation); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
	tag, _ := name.NewTag(Operator)
	if tag.RepositoryStr() != "isolator" || tag.Context().Name() != OperatorRepository || tag.TagStr() != OperatorTag {
		t.Errorf("operator ref %s splits into %s : %s", Operator, tag.Context().Name(), tag.TagStr())
	}
}
