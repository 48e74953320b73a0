package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"hearth.dev/internal/compose"
	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/imagesrc"
)

// composeOpts are pack's flags for a compose project.
type composeOpts struct {
	file, envFile, id, version, imagesFrom string
	manifestOnly                           bool
	insecure                               bool
}

const composeHelp = `
With --compose FILE, pack turns a compose project (docker-compose.yml, compose.yaml) into a
package instead of reading DIR:

  services        → daemons, each with its image (images shared by several services are
                    stored once); depends_on → requires; a service another waits for with
                    condition: service_completed_successfully (or labelled
                    hearth.oneshot: "true") → a oneshot
  healthcheck     → an exec ready check (interval, timeout, retries, start_period)
  environment, env_file, ${VAR:-default}
                  → env (variables from --env-file, default .env beside FILE, then the
                    environment)
  command, entrypoint, user, working_dir → args, command, user, workdir
  volumes         → named volumes → volumes; ./relative directories and files → volumes
                    seeded at install from a copy packed into the package
  ports           → interfaces (http for ports 80, 3000, 5000, 8000, 8008, 8080, 8081, 8888
                    or the label hearth.http), exposed on the LAN (label hearth.expose)
  deploy.resources.limits, mem_limit, cpus, pids_limit → the package's limits (the sum)
  restart         → the restart policy

All services share one network: each service's name resolves to 127.0.0.1, so two
services on one port are refused. Refused, naming the service and key: network_mode: host,
privileged, devices, cap_add, build: without image:, binds of host paths (other than
/etc/localtime and /etc/timezone, which are dropped). container_name, hostname, networks,
logging and the like are dropped with a warning. docs/compose.md has the whole table.

Labels of a service steer the conversion:
  hearth.http: "true" | "false" | "80,8080"   which published ports speak HTTP
  hearth.expose: "lan,tor,domain"             where its interfaces are offered (default lan)
  hearth.interface.NAME: "PORT[/http|/tcp]"   an interface named NAME on PORT
  hearth.oneshot: "true"                      the service runs once, as a oneshot

Output: with --manifest-only, or --out naming a directory (an existing one, or a path ending
in /), pack writes a directory to edit and pack later (hearthctl pack DIR): manifest.yaml,
assets/seed/<volume>/ and, unless --manifest-only, images/<name>. Otherwise it writes a
signed .hpkg (default ID-VERSION.hpkg).

Images are pulled from their registries (credentials from the docker config, as
'hearthctl image pull' takes them), for this machine's platform. Offline, --images-from DIR
takes each image from DIR instead: an OCI layout directory, an OCI archive or a 'docker
save' file, named after the image as the compose file writes it, either as a path
(DIR/postgres:16, DIR/registry.example.org/org/app:1.2) or with '/', ':' and '@' as '_' and an
optional .tar, .tar.gz or .oci.tar (DIR/postgres_16.tar, DIR/registry.example.org_org_app_1.2.tar).
An image without a tag may also be found under its :latest name.`

func addComposeFlags(cmd *cobra.Command, o *composeOpts) {
	f := cmd.Flags()
	f.StringVar(&o.file, "compose", "", "make the package from this compose file (see above)")
	f.StringVar(&o.envFile, "env-file", "", "with --compose: variables for ${VAR} interpolation (default: .env beside the compose file, when there is one)")
	f.StringVar(&o.id, "id", "", "with --compose: the package's id (default: the project's name or directory)")
	f.StringVar(&o.version, "version", "", "with --compose: the package's version (default 1.0.0)")
	f.StringVar(&o.imagesFrom, "images-from", "", "with --compose: take the images from this directory instead of their registries")
	f.BoolVar(&o.manifestOnly, "manifest-only", false, "with --compose: write the directory with manifest.yaml, without fetching any image")
	f.BoolVar(&o.insecure, "insecure-registry", false, "with --compose: pull over plain HTTP (a registry on this machine)")
	cmd.Long += "\n" + composeHelp
	cmd.Example += `
  hearthctl pack --compose docker-compose.yml --key ~/hearth-dev.key
  hearthctl pack --compose compose.yaml --manifest-only --out notes/   # edit notes/manifest.yaml, then:
  hearthctl pack notes --key ~/hearth-dev.key
  hearthctl pack --compose compose.yaml --images-from ./saved --key ~/hearth-dev.key --out notes.hpkg`
}

// composeResult is what pack --compose reports.
type composeResult struct {
	Dir      string      `json:"dir,omitempty"`
	Package  *packResult `json:"package,omitempty"`
	Warnings []string    `json:"warnings,omitempty"`
	Images   []string    `json:"images"`
}

// packCompose runs pack --compose.
func packCompose(ctx context.Context, g *globals, o composeOpts, out string, key ed25519.PrivateKey, allowUnsigned bool) error {
	data, err := os.ReadFile(o.file)
	if err != nil {
		return fmt.Errorf("compose file: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	projectDir, err := filepath.Abs(filepath.Dir(o.file))
	if err != nil {
		return err
	}
	env := map[string]string{}
	envFile, explicit := o.envFile, o.envFile != ""
	if !explicit {
		envFile = filepath.Join(projectDir, ".env")
	}
	if vars, err := compose.ReadEnvFile(envFile); err == nil {
		env = vars
	} else if explicit || !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("env file: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	res, err := compose.Convert(data, compose.Options{File: o.file, Dir: projectDir, Env: env, ID: o.id, Version: o.version})
	if err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	rep := &composeResult{Images: slices.Sorted(maps.Keys(res.Images))}
	for _, w := range res.Warnings {
		rep.Warnings = append(rep.Warnings, w.String())
		if g.output != "json" {
			fmt.Fprintln(g.stderr, "warning: "+w.String())
		}
	}

	toDir := o.manifestOnly || strings.HasSuffix(out, "/")
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		toDir = true
	}
	if !toDir && !allowUnsigned && key == nil {
		return fmt.Errorf("a package is signed: give --key KEY (make one with hearthctl keys generate), or --allow-unsigned, or write a directory with --manifest-only or --out DIR/: %w", errdefs.ErrInvalidArgument)
	}
	// Everything is written into a scratch directory first: a failure leaves nothing behind.
	var dir, target string
	if toDir {
		target = strings.TrimSuffix(out, "/")
		if target == "" {
			target = res.Manifest.ID
		}
		if ents, err := os.ReadDir(target); err == nil && len(ents) > 0 {
			return fmt.Errorf("%s is not empty: give a new or empty directory with --out, or pack the one you have with hearthctl pack %s: %w", target, target, errdefs.ErrAlreadyExists)
		}
		if dir, err = os.MkdirTemp(filepath.Dir(target), ".hearthctl-compose-"); err != nil {
			return err
		}
	} else {
		if out == "" {
			out = res.Manifest.ID + "-" + res.Manifest.Version + ".hpkg"
		}
		if dir, err = os.MkdirTemp(filepath.Dir(out), ".hearthctl-compose-"); err != nil {
			return err
		}
	}
	defer os.RemoveAll(dir)
	mdata, err := res.ManifestYAML(filepath.Base(o.file))
	if err != nil {
		return err
	}
	for _, s := range res.Seeds {
		to := filepath.Join(dir, "assets", compose.AssetsSeedDir, s.Volume)
		if s.File != "" {
			to = filepath.Join(to, s.File)
		}
		if err := copyTree(s.Source, to, g.stderr); err != nil {
			return fmt.Errorf("seed of volume %s: %w", s.Volume, err)
		}
	}
	if !o.manifestOnly {
		if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
			return err
		}
		view := newProgressView(g)
		for _, n := range rep.Images {
			ref := res.Images[n]
			target := filepath.Join(dir, "images", n)
			if o.imagesFrom != "" {
				src, err := findImage(o.imagesFrom, ref)
				if err != nil {
					return err
				}
				if g.output != "json" {
					fmt.Fprintf(g.stderr, "image %s: %s\n", ref, src)
				}
				if err := os.Symlink(src, target); err != nil {
					return err
				}
				continue
			}
			if g.output != "json" {
				fmt.Fprintf(g.stderr, "pulling %s\n", ref)
			}
			if err := pullImage(ctx, ref, n, target, o.insecure, view); err != nil {
				return fmt.Errorf("image %s (%s): %w", n, ref, err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.yaml"), mdata, 0o644); err != nil {
		return err
	}
	if toDir {
		if err := os.Chmod(dir, 0o755); err != nil {
			return err
		}
		_ = os.Remove(target) // an empty directory the user made
		if err := os.Rename(dir, target); err != nil {
			return err
		}
		rep.Dir = target
	} else {
		if rep.Package, err = pack(dir, out, key, newProgressView(g)); err != nil {
			return err
		}
	}
	if g.output == "json" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		_, err = fmt.Fprintln(g.stdout, string(b))
		return err
	}
	if toDir {
		what := "manifest.yaml and images"
		if o.manifestOnly {
			what = "manifest.yaml (put each image at images/<name>)"
		}
		_, err = fmt.Fprintf(g.stdout, "%s: %s of %s %s, %d images, %d warnings\nedit it, then: hearthctl pack %s --key KEY\n",
			target, what, res.Manifest.ID, res.Manifest.Version, len(res.Images), len(res.Warnings), target)
		return err
	}
	p := rep.Package
	signer := "unsigned"
	if p.KeyID != "" {
		signer = "signed by key " + p.KeyID
	}
	_, err = fmt.Fprintf(g.stdout, "%s: %s %s, %d images, %s, %s, %d warnings\nsha256 %s\n", p.File, p.ID, p.Version, len(p.Images), human(p.Size), signer, len(res.Warnings), p.SHA256)
	return err
}

// imageFileNames are the names --images-from looks for, for an image reference.
func imageFileNames(ref string) []string {
	refs := []string{ref}
	last := ref[strings.LastIndexByte(ref, '/')+1:]
	if !strings.ContainsAny(last, ":@") {
		refs = append(refs, ref+":latest")
	}
	var out []string
	for _, r := range refs {
		flat := strings.NewReplacer("/", "_", ":", "_", "@", "_").Replace(r)
		out = append(out, r)
		for _, ext := range []string{"", ".tar", ".tar.gz", ".oci.tar"} {
			out = append(out, flat+ext)
		}
	}
	return out
}

// findImage finds ref's file in dir (see imageFileNames).
func findImage(dir, ref string) (string, error) {
	names := imageFileNames(ref)
	for _, n := range names {
		if strings.Contains(n, "..") {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(n))
		if _, err := os.Stat(p); err == nil {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("image %s is not in %s: name its OCI layout, OCI archive or docker save file %s: %w",
		ref, dir, strings.Join(names, ", "), errdefs.ErrNotFound)
}

// pullImage fetches ref for this machine's platform into an OCI layout at target.
func pullImage(ctx context.Context, ref, imgName, target string, insecure bool, view *progressView) error {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithPlatform(imagesrc.HostPlatform),
		remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return err
	}
	lay, err := layout.Write(target, empty.Index)
	if err != nil {
		return err
	}
	return addImage(lay, imgName, img, view)
}

// copyTree copies the directories and regular files under src to dst; a link or a
// special file is skipped with a warning (a package holds only files and directories).
func copyTree(src, dst string, warn io.Writer) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			outF, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			if _, err := io.Copy(outF, in); err != nil {
				outF.Close()
				return err
			}
			return outF.Close()
		default:
			fmt.Fprintf(warn, "warning: %s is a %v, not packed: a package holds files and directories only\n", p, d.Type())
			return nil
		}
	})
}
