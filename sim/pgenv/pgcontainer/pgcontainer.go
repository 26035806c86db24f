// Package pgcontainer runs package pgenv's container backend on
// testcontainers-go and its postgres module (v0.45.0):
//
//	srv, err := pgenv.Start(ctx, pgenv.Options{Use: "container", Engine: pgcontainer.New(pgcontainer.Options{})})
//
// It is a Go module of its own so that the core harness does not carry
// testcontainers' ~70 modules: pgenv has a built-in engine (the Docker
// Engine API on a unix socket, standard library only) that it uses when
// Options.Engine is nil. Use this one to reach what testcontainers reaches
// and the built-in one does not: Docker contexts and TLS or SSH engines
// configured in ~/.testcontainers.properties, and testcontainers' own
// image substitutors and registry credentials. pgenv keeps every promise
// itself — image, settings, loopback port, owner label, readiness, sweep,
// immediate-shutdown restarts — this package only carries out engine calls.
//
// Containers use the host's network namespace and listen on 127.0.0.1
// only. testcontainers attaches a container to a "bridge" network, or
// creates its own reaper_default bridge when the engine has none (a dockerd
// started with --bridge=none, as on CI machines that must not route
// anything but loopback): there set TESTCONTAINERS_PROVIDER=workproof-host,
// the runtime provider this package registers, whose default network is the
// host's. Where Ryuk (testcontainers' reaper) cannot be pulled, set
// TESTCONTAINERS_RYUK_DISABLED=true: pgenv sweeps the containers of killed
// runs itself.
package pgcontainer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/modules/postgres"

	"github.com/workproof/workproof/sim/pgenv"
)

// ProviderName is the testcontainers runtime provider this package
// registers: standard Docker discovery, the host's network as the default
// network, ports published on 127.0.0.1. Select it with
// TESTCONTAINERS_PROVIDER=workproof-host.
const ProviderName = "workproof-host"

// registration is package state because testcontainers' registry of
// runtime providers is process-wide, takes each name once, and must be
// filled before testcontainers first discovers Docker; New is the first
// place this package runs.
var registration struct {
	once sync.Once
	err  error
}

type hostRuntime struct{}

func (hostRuntime) Initialize(context.Context) (testcontainers.RuntimeConfig, error) {
	return testcontainers.RuntimeConfig{DefaultBridgeNetwork: "host", PublishedHost: "127.0.0.1"}, nil
}

// Options configures New. Every zero value is usable.
type Options struct {
	// Logger receives testcontainers' progress lines. Zero: discarded.
	Logger tclog.Logger
}

// Engine is a pgenv.ContainerEngine on testcontainers-go. Its methods are
// safe for concurrent use.
type Engine struct {
	log tclog.Logger

	mu     sync.Mutex
	client *testcontainers.DockerClient
}

var _ pgenv.ContainerEngine = (*Engine)(nil)

// New returns an Engine and registers the workproof-host runtime provider
// (once per process). It does not connect.
func New(opts Options) *Engine {
	registration.once.Do(func() {
		registration.err = testcontainers.RegisterProvider(ProviderName, func() testcontainers.RuntimeProvider { return hostRuntime{} })
	})
	l := opts.Logger
	if l == nil {
		l = discard{}
	}
	return &Engine{log: l}
}

type discard struct{}

func (discard) Printf(string, ...any) {}

func (e *Engine) String() string { return "testcontainers-go (" + selectedProvider() + ")" }

func selectedProvider() string {
	if p := os.Getenv("TESTCONTAINERS_PROVIDER"); p != "" {
		return "provider " + p
	}
	return "provider docker"
}

func (e *Engine) docker(ctx context.Context) (*testcontainers.DockerClient, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client != nil {
		return e.client, nil
	}
	c, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, err
	}
	e.client = c
	return c, nil
}

// Close releases the engine's connections.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client == nil {
		return nil
	}
	err := e.client.Close()
	e.client = nil
	return err
}

// Ping reports whether the engine answers, and fails when testcontainers
// would create a bridge network (the engine has no "bridge" network and the
// workproof-host provider is not selected).
func (e *Engine) Ping(ctx context.Context) error {
	if strings.EqualFold(os.Getenv("TESTCONTAINERS_PROVIDER"), ProviderName) && registration.err != nil {
		return fmt.Errorf("pgcontainer: TESTCONTAINERS_PROVIDER=%s, but registering it failed (testcontainers was used before pgcontainer.New): %w", ProviderName, registration.err)
	}
	c, err := e.docker(ctx)
	if err != nil {
		return fmt.Errorf("pgcontainer: no Docker engine for testcontainers-go: %w", err)
	}
	if _, err := c.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("pgcontainer: the Docker engine does not answer: %w", err)
	}
	if strings.EqualFold(os.Getenv("TESTCONTAINERS_PROVIDER"), ProviderName) {
		return nil
	}
	nets, err := c.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return fmt.Errorf("pgcontainer: listing networks: %w", err)
	}
	for _, n := range nets.Items {
		if n.Name == "bridge" {
			return nil
		}
	}
	return fmt.Errorf("pgcontainer: the Docker engine has no \"bridge\" network (dockerd --bridge=none?), so testcontainers would create its reaper_default bridge: set TESTCONTAINERS_PROVIDER=%s", ProviderName)
}

// Run starts the container through testcontainers' postgres module, with
// spec's command, environment and labels and the host's network.
func (e *Engine) Run(ctx context.Context, spec pgenv.ContainerSpec) (string, error) {
	env := map[string]string{}
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	ctr, err := postgres.Run(ctx, spec.Image,
		testcontainers.WithEnv(env),
		testcontainers.WithCmd(spec.Cmd...),
		testcontainers.WithLabels(spec.Labels),
		testcontainers.WithName(spec.Name),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.NetworkMode = "host"
			hc.PortBindings = nil
			hc.PublishAllPorts = false
		}),
		testcontainers.WithLogger(e.log),
	)
	if err != nil {
		if ctr != nil {
			_ = ctr.Terminate(context.WithoutCancel(ctx))
		}
		return "", fmt.Errorf("pgcontainer: starting %s: %w", spec.Image, err)
	}
	return ctr.GetContainerID(), nil
}

func (e *Engine) Running(ctx context.Context, id string) (bool, error) {
	c, err := e.docker(ctx)
	if err != nil {
		return false, err
	}
	r, err := c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return false, fmt.Errorf("pgcontainer: inspecting %.12s: %w", id, err)
	}
	return r.Container.State != nil && r.Container.State.Running, nil
}

func (e *Engine) Logs(ctx context.Context, id string) (string, error) {
	c, err := e.docker(ctx)
	if err != nil {
		return "", err
	}
	rc, err := c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "40"})
	if err != nil {
		return "", fmt.Errorf("pgcontainer: logs of %.12s: %w", id, err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 1<<20)); err != nil {
		return out.String(), err
	}
	return out.String(), nil
}

func (e *Engine) Kill(ctx context.Context, id, signal string) error {
	c, err := e.docker(ctx)
	if err != nil {
		return err
	}
	if _, err := c.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: signal}); err != nil && !isNotRunning(err) {
		return fmt.Errorf("pgcontainer: sending %s to %.12s: %w", signal, id, err)
	}
	w := c.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case <-w.Result:
		return nil
	case err := <-w.Error:
		return fmt.Errorf("pgcontainer: waiting for %.12s to stop: %w", id, err)
	}
}

// isNotRunning: the engine answers 409 to a kill of a stopped container.
func isNotRunning(err error) bool {
	return strings.Contains(err.Error(), "is not running")
}

func (e *Engine) Start(ctx context.Context, id string) error {
	c, err := e.docker(ctx)
	if err != nil {
		return err
	}
	if _, err := c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("pgcontainer: starting %.12s: %w", id, err)
	}
	return nil
}

func (e *Engine) Remove(ctx context.Context, id string) error {
	c, err := e.docker(ctx)
	if err != nil {
		return err
	}
	_, err = c.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !strings.Contains(err.Error(), "No such container") && !strings.Contains(err.Error(), "already in progress") {
		return fmt.Errorf("pgcontainer: removing %.12s: %w", id, err)
	}
	return nil
}

func (e *Engine) List(ctx context.Context, label string) ([]pgenv.ContainerInfo, error) {
	c, err := e.docker(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", label)})
	if err != nil {
		return nil, fmt.Errorf("pgcontainer: listing containers: %w", err)
	}
	out := make([]pgenv.ContainerInfo, 0, len(r.Items))
	for _, s := range r.Items {
		out = append(out, pgenv.ContainerInfo{ID: s.ID, Labels: s.Labels})
	}
	return out, nil
}
