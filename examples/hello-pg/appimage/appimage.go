// Package appimage writes hello-pg's app image as an OCI layout: busybox-static, the app
// binary at /app/server, and an "app" user.
package appimage

import (
	"archive/tar"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"hearth.dev/services/containerd-lite/imagetest"
)

// Write writes the image with the app binary at app to the new directory out.
func Write(app, out, busybox string) error {
	bin, err := os.ReadFile(app)
	if err != nil {
		return err
	}
	files, err := imagetest.Busybox(busybox)
	if err != nil {
		return err
	}
	files = append(files,
		imagetest.File{Name: "app/", Type: tar.TypeDir},
		imagetest.File{Name: "app/server", Body: string(bin), Mode: 0o755},
		imagetest.File{Name: "etc/passwd", Body: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/app:/bin/sh\n"})
	return imagetest.WriteOCILayout(out, imagetest.Image(v1.Config{Cmd: []string{"/app/server"}, User: "app"}, files))
}
