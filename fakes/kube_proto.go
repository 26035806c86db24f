package fakes

// A decoder for the subset of Kubernetes' protobuf encoding that a
// Deployment written by client-go uses (its typed clients send
// application/vnd.kubernetes.protobuf by default). Decoding it with
// k8s.io/apimachinery's codecs would pull apimachinery and k8s.io/api into
// every module that imports package fakes; the subset is small, and
// google.golang.org/protobuf's wire reader is already in the module graph.
//
// The envelope is "k8s\x00" followed by a runtime.Unknown (typeMeta = 1,
// raw = 2); raw is the apps/v1 Deployment. Kubernetes' generated code
// encodes every non-pointer field, zero or not, so a field this schema does
// not know is accepted when its value is zero (recursively, for a nested
// message) and refused otherwise: the request is answered 415 naming the
// field, and a client can set rest.Config.ContentType to
// "application/json", which the fake reads whole. Field numbers are those
// of k8s.io/api v0.37 (apps/v1, core/v1) and apimachinery v0.37
// (meta/v1, runtime, resource, intstr) generated.proto; runtime.TypeMeta
// is apiVersion = 1, kind = 2 (meta/v1.TypeMeta has them the other way).

import (
	"bytes"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// kubeProtoMagic starts every Kubernetes protobuf body.
var kubeProtoMagic = []byte("k8s\x00")

// errProtoUnsupported is wrapped by a decode error for a field the subset
// does not cover.
var errProtoUnsupported = errors.New("unsupported protobuf field")

type pkind int

const (
	pString pkind = iota
	pInt
	pBool
	pMsg
	pMapString   // map<string,string>
	pMapQuantity // map<string,Quantity>, as {"cpu":"500m"}
	pRepString
	pRepMsg
	pSkip        // server-set (creationTimestamp, generation, …): dropped
	pIntOrString // intstr.IntOrString
)

type pfield struct {
	name     string
	kind     pkind
	msg      pmsg
	keepZero bool // a pointer field: present means set, even to zero
}

type pmsg map[protowire.Number]pfield

var (
	pObjectMeta = pmsg{
		1: {name: "name"}, 2: {name: "generateName"}, 3: {name: "namespace"}, 4: {kind: pSkip},
		5: {name: "uid"}, 6: {name: "resourceVersion"}, 7: {kind: pSkip}, 8: {kind: pSkip},
		11: {name: "labels", kind: pMapString}, 12: {name: "annotations", kind: pMapString},
		14: {name: "finalizers", kind: pRepString},
	}
	pContainer = pmsg{
		1: {name: "name"}, 2: {name: "image"}, 3: {name: "command", kind: pRepString},
		4: {name: "args", kind: pRepString}, 5: {name: "workingDir"},
		6: {name: "ports", kind: pRepMsg, msg: pmsg{
			1: {name: "name"}, 2: {name: "hostPort", kind: pInt}, 3: {name: "containerPort", kind: pInt},
			4: {name: "protocol"}, 5: {name: "hostIP"},
		}},
		7: {name: "env", kind: pRepMsg, msg: pmsg{1: {name: "name"}, 2: {name: "value"}}},
		8: {name: "resources", kind: pMsg, msg: pmsg{
			1: {name: "limits", kind: pMapQuantity}, 2: {name: "requests", kind: pMapQuantity},
		}},
		13: {name: "terminationMessagePath"}, 14: {name: "imagePullPolicy"}, 20: {name: "terminationMessagePolicy"},
		16: {name: "stdin", kind: pBool}, 17: {name: "stdinOnce", kind: pBool}, 18: {name: "tty", kind: pBool},
	}
	pDeployment = pmsg{
		1: {name: "metadata", kind: pMsg, msg: pObjectMeta},
		2: {name: "spec", kind: pMsg, msg: pmsg{
			1: {name: "replicas", kind: pInt, keepZero: true},
			2: {name: "selector", kind: pMsg, msg: pmsg{1: {name: "matchLabels", kind: pMapString}}},
			3: {name: "template", kind: pMsg, msg: pmsg{
				1: {name: "metadata", kind: pMsg, msg: pObjectMeta},
				2: {name: "spec", kind: pMsg, msg: pmsg{
					2: {name: "containers", kind: pRepMsg, msg: pContainer},
					3: {name: "restartPolicy"}, 4: {name: "terminationGracePeriodSeconds", kind: pInt, keepZero: true},
					6: {name: "dnsPolicy"}, 8: {name: "serviceAccountName"}, 19: {name: "schedulerName"},
				}},
			}},
			4: {name: "strategy", kind: pMsg, msg: pmsg{
				1: {name: "type"},
				2: {name: "rollingUpdate", kind: pMsg, msg: pmsg{
					1: {name: "maxUnavailable", kind: pIntOrString}, 2: {name: "maxSurge", kind: pIntOrString},
				}},
			}},
			5: {name: "minReadySeconds", kind: pInt}, 6: {name: "revisionHistoryLimit", kind: pInt, keepZero: true},
			7: {name: "paused", kind: pBool}, 9: {name: "progressDeadlineSeconds", kind: pInt, keepZero: true},
		}},
		3: {kind: pSkip}, // status: the server's
	}
	pUnknown = pmsg{
		1: {name: "typeMeta", kind: pMsg, msg: pmsg{1: {name: "apiVersion"}, 2: {name: "kind"}}},
		2: {name: "raw", kind: pSkip}, 3: {name: "contentEncoding"}, 4: {name: "contentType"},
	}
)

// decodeKubeProto decodes a protobuf Deployment body into its JSON form
// (a map as encoding/json would decode the JSON body of the same object).
func decodeKubeProto(body []byte) (map[string]any, error) {
	rest, ok := bytes.CutPrefix(body, kubeProtoMagic)
	if !ok {
		return nil, errors.New("protobuf body without the k8s\\x00 prefix")
	}
	env, err := decodeProto(rest, pUnknown, "unknown")
	if err != nil {
		return nil, err
	}
	if enc, _ := env["contentEncoding"].(string); enc != "" {
		return nil, fmt.Errorf("%w: contentEncoding %q", errProtoUnsupported, enc)
	}
	raw, err := protoField(rest, 2)
	if err != nil {
		return nil, err
	}
	obj, err := decodeProto(raw, pDeployment, "deployment")
	if err != nil {
		return nil, err
	}
	if tm, ok := env["typeMeta"].(map[string]any); ok {
		for k, v := range tm {
			obj[k] = v
		}
	}
	return obj, nil
}

// protoField returns the bytes of the first length-delimited field num.
func protoField(b []byte, num protowire.Number) ([]byte, error) {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, protowire.ParseError(l)
		}
		b = b[l:]
		vl := protowire.ConsumeFieldValue(n, typ, b)
		if vl < 0 {
			return nil, protowire.ParseError(vl)
		}
		if n == num && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			return v, nil
		}
		b = b[vl:]
	}
	return nil, nil
}

func decodeProto(b []byte, m pmsg, path string) (map[string]any, error) {
	out := map[string]any{}
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, fmt.Errorf("%s: %w", path, protowire.ParseError(l))
		}
		b = b[l:]
		vl := protowire.ConsumeFieldValue(num, typ, b)
		if vl < 0 {
			return nil, fmt.Errorf("%s: field %d: %w", path, num, protowire.ParseError(vl))
		}
		val := b[:vl]
		b = b[vl:]
		f, known := m[num]
		if !known {
			if !protoZero(typ, val) {
				return nil, fmt.Errorf("%w %s.%d", errProtoUnsupported, path, num)
			}
			continue
		}
		if f.kind == pSkip {
			continue
		}
		fpath := path + "." + f.name
		var bytesVal []byte
		var intVal uint64
		switch typ {
		case protowire.BytesType:
			bytesVal, _ = protowire.ConsumeBytes(val)
		case protowire.VarintType:
			intVal, _ = protowire.ConsumeVarint(val)
		default:
			return nil, fmt.Errorf("%s: unexpected wire type %d", fpath, typ)
		}
		wantBytes := f.kind != pInt && f.kind != pBool
		if wantBytes != (typ == protowire.BytesType) {
			return nil, fmt.Errorf("%s: unexpected wire type %d", fpath, typ)
		}
		switch f.kind {
		case pString:
			if len(bytesVal) > 0 {
				out[f.name] = string(bytesVal)
			}
		case pInt:
			if intVal != 0 || f.keepZero {
				out[f.name] = float64(int64(intVal)) // as encoding/json decodes numbers
			}
		case pBool:
			if intVal != 0 {
				out[f.name] = true
			}
		case pRepString:
			l, _ := out[f.name].([]any)
			out[f.name] = append(l, string(bytesVal))
		case pMsg, pRepMsg:
			sub, err := decodeProto(bytesVal, f.msg, fpath)
			if err != nil {
				return nil, err
			}
			if f.kind == pRepMsg {
				l, _ := out[f.name].([]any)
				out[f.name] = append(l, sub)
			} else if len(sub) > 0 {
				out[f.name] = sub
			}
		case pMapString, pMapQuantity:
			vmsg := pmsg{1: {name: "k"}, 2: {name: "v"}}
			if f.kind == pMapQuantity {
				vmsg[2] = pfield{name: "v", kind: pMsg, msg: pmsg{1: {name: "string"}}}
			}
			e, err := decodeProto(bytesVal, vmsg, fpath)
			if err != nil {
				return nil, err
			}
			k, _ := e["k"].(string)
			v, _ := e["v"].(string)
			if q, ok := e["v"].(map[string]any); ok {
				v, _ = q["string"].(string)
			}
			mp, _ := out[f.name].(map[string]any)
			if mp == nil {
				mp = map[string]any{}
				out[f.name] = mp
			}
			mp[k] = v
		case pIntOrString:
			e, err := decodeProto(bytesVal, pmsg{1: {name: "type", kind: pInt}, 2: {name: "intVal", kind: pInt}, 3: {name: "strVal"}}, fpath)
			if err != nil {
				return nil, err
			}
			if t, _ := e["type"].(float64); t == 1 {
				out[f.name], _ = e["strVal"].(string)
			} else {
				iv, _ := e["intVal"].(float64)
				out[f.name] = iv
			}
		}
	}
	return out, nil
}

// protoZero reports whether an unknown field's value is a zero value: a zero
// varint or fixed number, an empty string, or a message all of whose fields
// are zero.
func protoZero(typ protowire.Type, val []byte) bool {
	switch typ {
	case protowire.VarintType:
		v, _ := protowire.ConsumeVarint(val)
		return v == 0
	case protowire.Fixed32Type:
		v, _ := protowire.ConsumeFixed32(val)
		return v == 0
	case protowire.Fixed64Type:
		v, _ := protowire.ConsumeFixed64(val)
		return v == 0
	case protowire.BytesType:
		b, _ := protowire.ConsumeBytes(val)
		for len(b) > 0 {
			num, t, l := protowire.ConsumeTag(b)
			if l < 0 {
				return false
			}
			b = b[l:]
			vl := protowire.ConsumeFieldValue(num, t, b)
			if vl < 0 || !protoZero(t, b[:vl]) {
				return false
			}
			b = b[vl:]
		}
		return true
	}
	return false
}
