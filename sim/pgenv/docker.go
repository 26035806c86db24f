package pgenv

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EnvDockerHost is the standard variable naming the Docker engine.
const EnvDockerHost = "DOCKER_HOST"

// defaultDockerSocket is where a Docker engine listens when DOCKER_HOST is
// not set.
const defaultDockerSocket = "/var/run/docker.sock"

// dockerAPIMax is the newest Engine API version this client speaks; it talks
// to an older engine in that engine's version (every call here exists since
// 1.30). Docker 29 accepts 1.44 and later only, so a fixed old version would
// not do.
var dockerAPIMax = apiVersion{1, 47}

const dockerAPIMin = "1.30"

// dockerEngine is the built-in ContainerEngine: the Docker Engine API over a
// unix socket, with the standard library's HTTP client. It covers the common
// case (a local dockerd, rootful or rootless, or Podman's Docker-compatible
// socket); TLS, SSH and remote engines are for package pgcontainer
// (testcontainers-go).
type dockerEngine struct {
	where  string // for messages: the DOCKER_HOST value or the default socket
	client *http.Client

	mu      sync.Mutex
	version string // negotiated API version, "" before the first Ping
}

// newDockerEngine returns a client for $DOCKER_HOST, else the default
// socket. It does not connect.
func newDockerEngine() (*dockerEngine, error) {
	host := os.Getenv(EnvDockerHost)
	path := defaultDockerSocket
	where := "unix://" + defaultDockerSocket
	if host != "" {
		where = "$" + EnvDockerHost + "=" + host
		p, ok := strings.CutPrefix(host, "unix://")
		if !ok || p == "" {
			return nil, fmt.Errorf("pgenv: the built-in Docker client speaks only to a unix socket, and %s is not one: set %s=unix:///path/to/docker.sock, or pass Options.Engine from package pgcontainer (testcontainers-go)", where, EnvDockerHost)
		}
		path = p
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:    4,
		IdleConnTimeout: 30 * time.Second,
	}
	return &dockerEngine{where: where, client: &http.Client{Transport: tr}}, nil
}

func (d *dockerEngine) String() string { return "Docker engine at " + d.where }

// closeIdle drops kept-alive connections (and their goroutines).
func (d *dockerEngine) closeIdle() { d.client.CloseIdleConnections() }

type apiVersion struct{ major, minor int }

func parseAPIVersion(s string) (apiVersion, bool) {
	maj, min, ok := strings.Cut(strings.TrimSpace(s), ".")
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(min)
	if !ok || err1 != nil || err2 != nil {
		return apiVersion{}, false
	}
	return apiVersion{a, b}, true
}

func (v apiVersion) less(w apiVersion) bool {
	return v.major < w.major || v.major == w.major && v.minor < w.minor
}

func (v apiVersion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// engineError is an answer of the engine with an error status.
type engineError struct {
	status int
	msg    string
}

func (e *engineError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.msg) }

func isStatus(err error, status int) bool {
	var ee *engineError
	return errors.As(err, &ee) && ee.status == status
}

// do sends one request and returns the response for the caller to close
// when the status is 2xx or 304; otherwise an *engineError.
func (d *dockerEngine) do(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	d.mu.Lock()
	version := d.version
	d.mu.Unlock()
	if version == "" && path != "/_ping" {
		if err := d.Ping(ctx); err != nil {
			return nil, err
		}
		d.mu.Lock()
		version = d.version
		d.mu.Unlock()
	}
	u := "http://docker"
	if version != "" {
		u += "/v" + version
	}
	u += path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var m struct{ Message string }
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		msg = m.Message
	}
	return nil, &engineError{status: resp.StatusCode, msg: msg}
}

// call sends a request and decodes a JSON answer into out (nil: discard).
func (d *dockerEngine) call(ctx context.Context, method, path string, query url.Values, body, out any) error {
	resp, err := d.do(ctx, method, path, query, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (d *dockerEngine) Ping(ctx context.Context) error {
	resp, err := d.do(ctx, http.MethodGet, "/_ping", nil, nil)
	if err != nil {
		return fmt.Errorf("pgenv: no %s: %w", d, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	v, ok := parseAPIVersion(resp.Header.Get("Api-Version"))
	if !ok {
		return fmt.Errorf("pgenv: %s answered /_ping without an API version: is it a Docker engine?", d)
	}
	if min, _ := parseAPIVersion(dockerAPIMin); v.less(min) {
		return fmt.Errorf("pgenv: %s speaks Engine API %s, older than %s", d, v, dockerAPIMin)
	}
	if dockerAPIMax.less(v) {
		v = dockerAPIMax
	}
	d.mu.Lock()
	d.version = v.String()
	d.mu.Unlock()
	return nil
}

func (d *dockerEngine) Run(ctx context.Context, spec ContainerSpec) (string, error) {
	if err := d.ensureImage(ctx, spec.Image); err != nil {
		return "", err
	}
	body := map[string]any{
		"Image":  spec.Image,
		"Cmd":    spec.Cmd,
		"Env":    spec.Env,
		"Labels": spec.Labels,
		"HostConfig": map[string]any{
			"NetworkMode": "host",
		},
	}
	if spec.DataDir != "" {
		body["HostConfig"].(map[string]any)["Binds"] = []string{spec.DataDir + ":" + DataMount}
	}
	var created struct{ Id string }
	if err := d.call(ctx, http.MethodPost, "/containers/create", url.Values{"name": {spec.Name}}, body, &created); err != nil {
		return "", fmt.Errorf("pgenv: creating a container from %s on the %s: %w", spec.Image, d, err)
	}
	if err := d.Start(ctx, created.Id); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = d.Remove(rctx, created.Id)
		return "", err
	}
	return created.Id, nil
}

// ensureImage pulls ref unless the engine has it.
func (d *dockerEngine) ensureImage(ctx context.Context, ref string) error {
	err := d.call(ctx, http.MethodGet, "/images/"+ref+"/json", nil, nil, nil)
	if err == nil {
		return nil
	}
	if !isStatus(err, http.StatusNotFound) {
		return fmt.Errorf("pgenv: looking up image %s on the %s: %w", ref, d, err)
	}
	resp, err := d.do(ctx, http.MethodPost, "/images/create", url.Values{"fromImage": {ref}}, nil)
	if err != nil {
		return fmt.Errorf("pgenv: image %s is not on the %s and pulling it failed (set %s to a local image, e.g. one built by scripts/docker-postgres-image.sh): %w", ref, d, EnvPGImage, err)
	}
	defer resp.Body.Close()
	// The answer is a stream of progress objects; an error arrives as one.
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct{ Error string }
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("pgenv: pulling %s: %w", ref, err)
		}
		if m.Error != "" {
			return fmt.Errorf("pgenv: image %s is not on the %s and pulling it failed (set %s to a local image, e.g. one built by scripts/docker-postgres-image.sh): %s", ref, d, EnvPGImage, m.Error)
		}
	}
}

func (d *dockerEngine) Running(ctx context.Context, id string) (bool, error) {
	var c struct{ State struct{ Running bool } }
	if err := d.call(ctx, http.MethodGet, "/containers/"+id+"/json", nil, nil, &c); err != nil {
		return false, fmt.Errorf("pgenv: inspecting container %.12s: %w", id, err)
	}
	return c.State.Running, nil
}

func (d *dockerEngine) Logs(ctx context.Context, id string) (string, error) {
	resp, err := d.do(ctx, http.MethodGet, "/containers/"+id+"/logs", url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {"40"}}, nil)
	if err != nil {
		return "", fmt.Errorf("pgenv: logs of container %.12s: %w", id, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	return demuxLogs(b), nil
}

// demuxLogs strips the 8-byte frame headers (stream, 3 zero bytes, big-endian
// length) of a container without a TTY; anything else is returned as it is.
func demuxLogs(b []byte) string {
	var out []byte
	for rest := b; len(rest) > 0; {
		if len(rest) < 8 || rest[0] > 2 || rest[1] != 0 || rest[2] != 0 || rest[3] != 0 {
			return string(b)
		}
		n := int(binary.BigEndian.Uint32(rest[4:8]))
		if len(rest) < 8+n {
			return string(b)
		}
		out = append(out, rest[8:8+n]...)
		rest = rest[8+n:]
	}
	return string(out)
}

func (d *dockerEngine) Kill(ctx context.Context, id, signal string) error {
	err := d.call(ctx, http.MethodPost, "/containers/"+id+"/kill", url.Values{"signal": {signal}}, nil, nil)
	if err != nil && !isStatus(err, http.StatusConflict) { // 409: not running
		return fmt.Errorf("pgenv: sending %s to container %.12s: %w", signal, id, err)
	}
	if err := d.call(ctx, http.MethodPost, "/containers/"+id+"/wait", url.Values{"condition": {"not-running"}}, nil, nil); err != nil {
		return fmt.Errorf("pgenv: waiting for container %.12s to stop: %w", id, err)
	}
	return nil
}

func (d *dockerEngine) Start(ctx context.Context, id string) error {
	if err := d.call(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil, nil); err != nil {
		return fmt.Errorf("pgenv: starting container %.12s on the %s: %w", id, d, err)
	}
	return nil
}

func (d *dockerEngine) Remove(ctx context.Context, id string) error {
	err := d.call(ctx, http.MethodDelete, "/containers/"+id, url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
	if err != nil && !isStatus(err, http.StatusNotFound) && !(isStatus(err, http.StatusConflict) && strings.Contains(err.Error(), "in progress")) {
		return fmt.Errorf("pgenv: removing container %.12s: %w", id, err)
	}
	return nil
}

func (d *dockerEngine) List(ctx context.Context, label string) ([]ContainerInfo, error) {
	filters, err := json.Marshal(map[string][]string{"label": {label}})
	if err != nil {
		return nil, err
	}
	var list []struct {
		Id     string
		Labels map[string]string
	}
	if err := d.call(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(filters)}}, nil, &list); err != nil {
		return nil, fmt.Errorf("pgenv: listing containers on the %s: %w", d, err)
	}
	out := make([]ContainerInfo, 0, len(list))
	for _, c := range list {
		out = append(out, ContainerInfo{ID: c.Id, Labels: c.Labels})
	}
	return out, nil
}
