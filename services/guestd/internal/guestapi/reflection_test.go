package guestapi

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"

	_ "google.golang.org/grpc/health/grpc_health_v1"
	_ "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"hearth.dev/internal/reflectsvc/fileset"
)

var update = flag.Bool("update", false, "rewrite reflection.binpb")

// TestReflectionSet: the descriptor set compiled into guestd is the one its services'
// generated code describes (-update rewrites it).
func TestReflectionSet(t *testing.T) {
	want, err := fileset.Of(ReflectedServices...)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("reflection.binpb", want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(reflectionSet, want) {
		t.Fatal("reflection.binpb is stale: run go test ./internal/guestapi -run TestReflectionSet -update")
	}
}

// TestNoProtodesc: guestd links neither protodesc nor grpc-go's reflection service (whose
// package init costs every container's guestd at start; reflectsvc serves reflection).
func TestNoProtodesc(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "hearth.dev/services/guestd").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if d == "google.golang.org/protobuf/reflect/protodesc" || d == "google.golang.org/grpc/reflection" {
			t.Errorf("guestd links %s", d)
		}
	}
	if !strings.Contains(string(out), "hearth.dev/internal/reflectsvc\n") {
		t.Errorf("go list -deps does not list reflectsvc:\n%s", out)
	}
}
