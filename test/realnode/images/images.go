// Package images builds the container images of the real-node test cluster
// without any image registry: each image is one static Go binary packed as a
// single-layer image tarball and imported straight into the node's containerd.
//
// The refs the cluster uses are the constants below; pods run them with
// imagePullPolicy Never or IfNotPresent, since nothing can be pulled.
package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image refs of the test cluster.
const (
	// Pause is the pod sandbox image (containerd's sandbox_image).
	Pause = "isolator.local/pause:1"
	// OperatorRepository and OperatorTag are the operator image's two parts,
	// as the chart's image.repository and image.tag values take them.
	OperatorRepository = "isolator.local/isolator"
	OperatorTag        = "dev"
	// Operator is the operator image built from the repository root.
	Operator = OperatorRepository + ":" + OperatorTag
	// TestServer is the OpenAI-compatible test server (cmd/testserver).
	TestServer = "isolator.local/openai-test:1"
	// Probe is the connectivity probe (cmd/probe).
	Probe = "isolator.local/probe:1"
)

// DefaultPath is the PATH set in every image's environment.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options says where the binary goes in the image and how it is run.
type Options struct {
	// Path is the absolute path of the binary in the image, e.g. "/manager".
	Path string
	// User is the user the image runs as, e.g. "65532:65532".
	User string
	// Entrypoint defaults to []string{Path}.
	Entrypoint []string
	// Symlinks are extra entries of the layer: link name (absolute) to
	// target, e.g. "/lib" to "usr/lib" for an image that runs host tools
	// from a hostPath volume mounted at /usr.
	Symlinks map[string]string
}

// Pack writes outTar, an image tarball tagged ref whose only layer holds the
// file binary at opts.Path (mode 0755, owned by root).
func Pack(binary, ref, outTar string, opts Options) error {
	if !path.IsAbs(opts.Path) || path.Clean(opts.Path) != opts.Path || opts.Path == "/" {
		return fmt.Errorf("image path %q must be a clean absolute file path", opts.Path)
	}
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image ref %q: %w", ref, err)
	}
	content, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	layerTar, err := singleFileTar(strings.TrimPrefix(opts.Path, "/"), content, opts.Symlinks)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return err
	}

	cfg, err := empty.Image.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = "amd64"
	entrypoint := opts.Entrypoint
	if len(entrypoint) == 0 {
		entrypoint = []string{opts.Path}
	}
	cfg.Config = v1.Config{
		Entrypoint: entrypoint,
		User:       opts.User,
		WorkingDir: "/",
		Env:        []string{DefaultPath},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return err
	}
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(outTar), 0o755); err != nil {
		return err
	}
	return tarball.WriteToFile(outTar, tag, img)
}

// singleFileTar returns an uncompressed tar stream holding content at name,
// and the symlinks in name order.
func singleFileTar(name string, content []byte, symlinks map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	links := make([]string, 0, len(symlinks))
	for l := range symlinks {
		links = append(links, l)
	}
	sort.Strings(links)
	for _, l := range links {
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(l, "/"), Linkname: symlinks[l],
			Mode: 0o777, ModTime: time.Unix(0, 0), Format: tar.FormatPAX,
		}); err != nil {
			return nil, err
		}
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     0o755,
		Size:     int64(len(content)),
		Uid:      0,
		Gid:      0,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Build compiles the Go package pkg, resolved in goDir, into the static
// linux/amd64 binary outBinary, as the operator's Dockerfile does:
// CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o outBinary pkg.
// Extra ldflags are appended to "-s -w".
func Build(goDir, pkg, outBinary string, ldflags ...string) error {
	out, err := filepath.Abs(outBinary)
	if err != nil {
		return err
	}
	flags := strings.Join(append([]string{"-s", "-w"}, ldflags...), " ")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", flags, "-o", out, pkg)
	cmd.Dir = goDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", pkg, goDir, err, output)
	}
	return nil
}

// Import loads the image tarball tarPath into the k8s.io namespace of the
// containerd listening on the socket ctrAddress, and unpacks it so the
// kubelet can start containers from it.
func Import(ctrAddress, tarPath string) error {
	if ctrAddress == "" {
		return errors.New("containerd address is empty")
	}
	// ctr waits 10 s for a socket that is not there: fail at once instead.
	if fi, err := os.Stat(ctrAddress); err != nil {
		return fmt.Errorf("containerd socket: %w", err)
	} else if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("containerd socket %s is not a socket", ctrAddress)
	}
	if _, err := os.Stat(tarPath); err != nil {
		return err
	}
	cmd := exec.Command("ctr", "--address", ctrAddress, "--namespace", "k8s.io",
		"images", "import", "--platform", "linux/amd64", tarPath)
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr images import %s: %w\n%s", tarPath, err, output)
	}
	return nil
}

// image is one image of the test cluster: which package builds it, in which
// module, and how it is packed.
type image struct {
	name   string // file name of the binary and the tarball
	module string // module directory, relative to the repository root
	pkg    string
	ref    string
	opts   Options
}

var all = []image{
	{name: "pause", module: "test/realnode", pkg: "./cmd/pause", ref: Pause,
		opts: Options{Path: "/pause", User: "65535:65535"}},
	{name: "manager", module: ".", pkg: "./cmd", ref: Operator,
		opts: Options{Path: "/manager", User: "65532:65532"}},
	{name: "openai-test", module: "test/realnode", pkg: "./cmd/testserver", ref: TestServer,
		opts: Options{Path: "/openai-test", User: "65532:65532"}},
	{name: "probe", module: "test/realnode", pkg: "./cmd/probe", ref: Probe,
		opts: Options{Path: "/probe", User: "65532:65532"}},
}

// BuildAll builds and packs the four images of the test cluster: the pause
// image, the operator (root is the repository root), the test server and the
// probe. Binaries go to workDir/bin, tarballs to workDir. It returns the
// tarball paths in that order: Pause, Operator, TestServer, Probe.
func BuildAll(root, workDir string) ([]string, error) {
	binDir := filepath.Join(workDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	tars := make([]string, 0, len(all))
	for _, im := range all {
		bin := filepath.Join(binDir, im.name)
		if err := Build(filepath.Join(root, im.module), im.pkg, bin); err != nil {
			return nil, err
		}
		out := filepath.Join(workDir, im.name+".tar")
		if err := Pack(bin, im.ref, out, im.opts); err != nil {
			return nil, fmt.Errorf("pack %s: %w", im.ref, err)
		}
		tars = append(tars, out)
	}
	return tars, nil
}
