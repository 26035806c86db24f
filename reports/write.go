package reports

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File names WriteDir uses.
const (
	JSONFile     = "report.json"
	MarkdownFile = "summary.md"
	EvidenceFile = "evidence.json"
)

// WriteJSON writes r as indented JSON (the model itself; Evidence is left out).
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("reports: encode: %w", err)
	}
	return nil
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(rd io.Reader) (Report, error) {
	var r Report
	dec := json.NewDecoder(rd)
	if err := dec.Decode(&r); err != nil {
		return Report{}, fmt.Errorf("reports: decode: %w", err)
	}
	if r.Schema > Schema {
		return r, fmt.Errorf("reports: schema %d is newer than this reader's %d", r.Schema, Schema)
	}
	return r, nil
}

// Files are the paths WriteDir wrote.
type Files struct {
	JSON     string // report.json
	Markdown string // summary.md
	Evidence string // evidence.json; empty when the report had none
}

// WriteDir writes r into dir (created if needed): report.json, summary.md
// and, when r.Evidence is set, evidence.json. Each file is written to a
// temporary name and renamed, so an interrupted write never leaves half a
// report behind.
func WriteDir(dir string, r *Report) (Files, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, fmt.Errorf("reports: %w", err)
	}
	f := Files{JSON: filepath.Join(dir, JSONFile), Markdown: filepath.Join(dir, MarkdownFile)}
	var errs []error
	errs = append(errs, writeFile(f.JSON, func(w io.Writer) error { return WriteJSON(w, r) }))
	errs = append(errs, writeFile(f.Markdown, func(w io.Writer) error { return WriteMarkdown(w, r) }))
	if r.Evidence != nil {
		f.Evidence = filepath.Join(dir, EvidenceFile)
		errs = append(errs, writeFile(f.Evidence, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", " ")
			return enc.Encode(r.Evidence)
		}))
	}
	return f, errors.Join(errs...)
}

func writeFile(path string, write func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return fmt.Errorf("reports: %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("reports: %w", err)
	}
	return nil
}
