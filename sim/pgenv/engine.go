package pgenv

import "context"

// ContainerEngine is what the container backend needs from a container
// engine: mechanism only, one engine call per method. Everything the harness
// promises — which image and settings, the loopback port, the owner label,
// readiness, the sweep of dead owners' containers, immediate-shutdown
// restarts — stays in pgenv, so every engine keeps those promises alike.
//
// pgenv has a built-in engine (the Docker Engine API on a unix socket,
// standard library only) and uses it when Options.Engine is nil. Package
// github.com/workproof/workproof/sim/pgenv/pgcontainer, a separate Go module
// so that the core harness does not carry testcontainers-go's ~70 modules,
// provides one built on testcontainers-go's postgres module. Pass either as
// Options.Engine; there is no registry.
//
// Every method may be called concurrently; ids are the engine's container
// ids.
type ContainerEngine interface {
	// Ping reports whether the engine answers. Start calls it first: an
	// error sends the automatic resolution on to the machine's binaries.
	Ping(ctx context.Context) error
	// Run creates and starts a container as spec says, pulling the image
	// when the engine does not have it, and returns its id as soon as it is
	// started (Start itself waits until Postgres accepts connections). On
	// error no container may be left behind.
	Run(ctx context.Context, spec ContainerSpec) (id string, err error)
	// Running reports whether the container is running (false, nil once it
	// has exited).
	Running(ctx context.Context, id string) (bool, error)
	// Logs returns the end of the container's output, for error messages.
	Logs(ctx context.Context, id string) (string, error)
	// Kill sends signal (e.g. "SIGQUIT") to the container's main process
	// and returns once the container has stopped. Killing a stopped
	// container is not an error.
	Kill(ctx context.Context, id, signal string) error
	// Start starts a stopped container again, with its file system as it
	// was.
	Start(ctx context.Context, id string) error
	// Remove removes the container and its anonymous volumes, killing it if
	// it runs. Removing a container that does not exist is not an error.
	Remove(ctx context.Context, id string) error
	// List returns every container, running or not, that carries a label
	// with the key label.
	List(ctx context.Context, label string) ([]ContainerInfo, error)
}

// ContainerSpec is a Postgres container as the container backend wants it.
// The container must use the host's network namespace (Docker's
// NetworkMode "host"): Postgres listens on 127.0.0.1 at the port given in
// Cmd, and nothing is published, bridged or NATed.
type ContainerSpec struct {
	// Name is the container's name (unique per Start).
	Name string
	// Image is the image reference, e.g. "postgres:15".
	Image string
	// Env is the environment, "KEY=value" (POSTGRES_* for the image's
	// entrypoint).
	Env []string
	// Cmd is the command given to the image's entrypoint: "postgres" and
	// its -c settings, including port and listen_addresses.
	Cmd []string
	// Labels are the container's labels; the owner label is how the sweep
	// finds containers of killed runs.
	Labels map[string]string
	// DataDir, when set, is a directory of the engine's host to bind-mount
	// at DataMount (where Env puts PGDATA): on tmpfs it makes a clone ~10×
	// faster than in the container's own overlay layer, and unlike a tmpfs
	// mount it survives Restart. Empty: no mount. pgenv sets it only for
	// its built-in engine on a local socket, as root.
	DataDir string
}

// DataMount is where ContainerSpec.DataDir is mounted in the container.
const DataMount = "/var/lib/postgresql/workproof"

// ContainerInfo is one container List found.
type ContainerInfo struct {
	ID     string
	Labels map[string]string
}
