package fakes

// The EC2 Query API in front of the fake cloud, as aws-sdk-go-v2's
// service/ec2 speaks it: POST / with a form body naming the Action and its
// flattened parameters (TagSpecification.1.Tag.1.Key, Filter.1.Value.1,
// InstanceId.1), answered in XML; errors as <Response><Errors><Error>.
// Signatures are not checked; the region is read from the SigV4 credential
// scope. Every action is one of the cloud's endpoints, with its semantics:
// RunInstances is CreateVM (ClientToken replay, IdempotentParameterMismatch
// — here over the tags and image too), DescribeInstances is DescribeVM,
// FindByToken or ListVMs (by what it asks for; read-after-write lag hides
// new VMs), ModifyInstanceAttribute with InstanceType is ResizeVM,
// TerminateInstances is TerminateVM (several ids at once, all or none).

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// ec2Namespace is the XML namespace of EC2 answers.
const ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// vmWire is what the EC2 API shows of a VM besides the VM itself.
type vmWire struct {
	image string
	tags  [][2]string // key, value, in request order
}

// ec2Endpoint names the endpoint of an EC2 Query request (Classify and the
// server's route both call it).
func ec2Endpoint(_ *http.Request, f url.Values) string {
	switch f.Get("Action") {
	case "RunInstances":
		return CreateVM
	case "DescribeInstances":
		if len(ec2List(f, "InstanceId")) > 0 {
			return DescribeVM
		}
		for _, fl := range ec2Filters(f) {
			if fl.name == "client-token" {
				return FindByToken
			}
		}
		return ListVMs
	case "ModifyInstanceAttribute":
		return ResizeVM
	case "TerminateInstances":
		return TerminateVM
	}
	return ""
}

// ec2List reads a flattened list: prefix.1, prefix.2, … up to the first gap.
func ec2List(f url.Values, prefix string) []string {
	var out []string
	for i := 1; i <= 1000; i++ {
		v, ok := f[prefix+"."+strconv.Itoa(i)]
		if !ok {
			break
		}
		out = append(out, v[0])
	}
	return out
}

type ec2Filter struct {
	name   string
	values []string
}

func ec2Filters(f url.Values) []ec2Filter {
	var out []ec2Filter
	for i := 1; i <= 100; i++ {
		p := "Filter." + strconv.Itoa(i)
		name, ok := f[p+".Name"]
		if !ok {
			break
		}
		out = append(out, ec2Filter{name: name[0], values: ec2List(f, p+".Value")})
	}
	return out
}

// ec2Tags reads the instance tags of a RunInstances.
func ec2Tags(f url.Values) [][2]string {
	var out [][2]string
	for i := 1; i <= 50; i++ {
		p := "TagSpecification." + strconv.Itoa(i)
		rt, ok := f[p+".ResourceType"]
		if !ok {
			break
		}
		if rt[0] != "instance" {
			continue
		}
		for j := 1; j <= 50; j++ {
			k, ok := f[p+".Tag."+strconv.Itoa(j)+".Key"]
			if !ok {
				break
			}
			out = append(out, [2]string{k[0], f.Get(p + ".Tag." + strconv.Itoa(j) + ".Value")})
		}
	}
	return out
}

// ec2Region is the region of the request's SigV4 credential scope
// ("Credential=AKID/20261201/us-east-1/ec2/aws4_request"); "us-east-1"
// when unsigned.
func ec2Region(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if _, cred, ok := strings.Cut(a, "Credential="); ok {
		cred, _, _ = strings.Cut(cred, ",")
		if parts := strings.Split(cred, "/"); len(parts) >= 5 && parts[2] != "" {
			return parts[2]
		}
	}
	return "us-east-1"
}

// ec2Err is a core error as EC2 answers it: every client error is a 400.
func ec2Err(e *apiError) *apiError {
	if e.status < 500 {
		return &apiError{http.StatusBadRequest, e.code, e.msg}
	}
	return e
}

func (s *CloudServer) ec2Run(c *rctx) {
	f, ok := c.form()
	if !ok {
		return
	}
	tags := ec2Tags(f)
	var owner string
	for _, t := range tags {
		if t[0] == OwnerKey {
			owner = t[1]
		}
	}
	req := CreateVMRequest{Owner: owner, Size: f.Get("InstanceType"), Region: ec2Region(c.r), ClientToken: f.Get("ClientToken")}
	c.rec.Owner, c.rec.Key = req.Owner, req.ClientToken
	c.params(req)
	err := firstErr(checkField("instance tag "+OwnerKey, req.Owner), checkField("InstanceType", req.Size),
		checkKey("ClientToken", req.ClientToken))
	for _, n := range []string{"MinCount", "MaxCount"} {
		if v := f.Get(n); err == nil && v != "" && v != "1" {
			err = fmt.Errorf("%s %s: the fake cloud runs one instance per call", n, v)
		}
	}
	if err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return
	}
	// The other parameters a client token binds, besides req: the image and
	// every tag, in a canonical order.
	sorted := slices.Clone(tags)
	slices.SortFunc(sorted, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	extra := fmt.Sprintf("image=%q tags=%q", f.Get("ImageId"), sorted)
	if !c.begin() {
		return
	}
	vm, effect, aerr := s.createVM(c, req, vmWire{image: f.Get("ImageId"), tags: tags}, extra)
	if aerr != nil {
		c.failWith(ec2Err(aerr))
		return
	}
	c.rec.Replayed = !effect
	in := s.ec2Instance(vm)
	c.reply(http.StatusOK, ec2XML(ec2RunResponse{Xmlns: ec2Namespace, RequestID: ec2RequestID(c),
		ReservationID: "r-" + strings.TrimPrefix(vm.ID, "i-"), OwnerID: ec2Account, Instances: []ec2Instance{in}}), effect, "")
}

type ec2DescribeParams struct {
	IDs     []string            `json:"ids,omitempty"`
	Filters map[string][]string `json:"filters,omitempty"`
}

// ec2Filterable are the DescribeInstances filters the fake understands.
var ec2Filterable = []string{"client-token", "instance-id", "instance-state-name", "instance-type", "tag:" + OwnerKey}

func (s *CloudServer) ec2Describe(c *rctx) {
	f, ok := c.form()
	if !ok {
		return
	}
	ids, filters := ec2List(f, "InstanceId"), ec2Filters(f)
	p := ec2DescribeParams{IDs: ids}
	for _, fl := range filters {
		if !slices.Contains(ec2Filterable, fl.name) {
			c.params(p)
			c.reject(http.StatusBadRequest, CodeInvalidRequest,
				fmt.Sprintf("filter %q: the fake cloud filters by %s", fl.name, strings.Join(ec2Filterable, ", ")))
			return
		}
		if p.Filters == nil {
			p.Filters = map[string][]string{}
		}
		p.Filters[fl.name] = append(p.Filters[fl.name], fl.values...)
	}
	c.params(p)
	if len(ids) > 0 {
		s.lookupOwner(c, ids[0])
	}
	if v := p.Filters["tag:"+OwnerKey]; len(v) == 1 {
		c.rec.Owner = v[0]
	}
	if v := p.Filters["client-token"]; len(v) == 1 {
		c.rec.Key = v[0]
		s.mu.Lock()
		if b := s.boundLocked(v[0], s.now()); b != nil {
			c.rec.Owner = b.st.vm.Owner
		}
		s.mu.Unlock()
	}
	if !c.begin() {
		return
	}
	now := s.now()
	s.mu.Lock()
	var sts []*vmState
	if len(ids) > 0 {
		for _, id := range ids {
			st := s.byID[id]
			if st == nil || now.Before(st.visibleAt) {
				s.mu.Unlock()
				c.failWith(ec2Err(&apiError{http.StatusNotFound, CodeInstanceNotFound, fmt.Sprintf("The instance ID '%s' does not exist", id)}))
				return
			}
			sts = append(sts, st)
		}
	} else {
		for _, st := range s.vms {
			if !now.Before(st.visibleAt) {
				sts = append(sts, st)
			}
		}
	}
	resp := ec2DescribeResponse{Xmlns: ec2Namespace, RequestID: ec2RequestID(c)}
	for _, st := range sts {
		if !ec2Matches(st, filters) {
			continue
		}
		resp.Reservations = append(resp.Reservations, ec2Reservation{
			ReservationID: "r-" + strings.TrimPrefix(st.vm.ID, "i-"), OwnerID: ec2Account,
			Instances: []ec2Instance{ec2InstanceOf(st)},
		})
	}
	s.mu.Unlock()
	c.reply(http.StatusOK, ec2XML(resp), false, "")
}

func ec2Matches(st *vmState, filters []ec2Filter) bool {
	for _, fl := range filters {
		var v string
		switch fl.name {
		case "client-token":
			v = st.vm.ClientToken
		case "instance-id":
			v = st.vm.ID
		case "instance-state-name":
			v = st.vm.State
		case "instance-type":
			v = st.vm.Size
		default: // the owner tag
			v = st.vm.Owner
		}
		if !slices.Contains(fl.values, v) {
			return false
		}
	}
	return true
}

func (s *CloudServer) ec2Modify(c *rctx) {
	f, ok := c.form()
	if !ok {
		return
	}
	id, size := f.Get("InstanceId"), f.Get("InstanceType.Value")
	if size == "" && f.Get("Attribute") == "instanceType" {
		size = f.Get("Value")
	}
	c.params(idParams{ID: id, Size: size})
	if err := firstErr(checkField("InstanceId", id), checkField("InstanceType.Value", size)); err != nil {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error()+" (the fake cloud modifies the instance type only)")
		return
	}
	s.lookupOwner(c, id)
	if !c.begin() {
		return
	}
	_, effect, err := s.resizeVM(id, size)
	if err != nil {
		c.failWith(ec2Err(err))
		return
	}
	c.reply(http.StatusOK, ec2XML(ec2ModifyResponse{Xmlns: ec2Namespace, RequestID: ec2RequestID(c), Return: true}), effect, "")
}

type idsParams struct {
	IDs []string `json:"ids"`
}

func (s *CloudServer) ec2Terminate(c *rctx) {
	f, ok := c.form()
	if !ok {
		return
	}
	ids := ec2List(f, "InstanceId")
	c.params(idsParams{IDs: ids})
	if len(ids) == 0 {
		c.reject(http.StatusBadRequest, CodeInvalidRequest, "missing InstanceId.1")
		return
	}
	for _, id := range ids {
		if err := checkField("InstanceId", id); err != nil {
			c.reject(http.StatusBadRequest, CodeInvalidRequest, err.Error())
			return
		}
	}
	s.lookupOwner(c, ids[0])
	if !c.begin() {
		return
	}
	ts, effect, err := s.terminateVMs(ids)
	if err != nil {
		c.failWith(ec2Err(err))
		return
	}
	resp := ec2TerminateResponse{Xmlns: ec2Namespace, RequestID: ec2RequestID(c)}
	for _, t := range ts {
		resp.Instances = append(resp.Instances, ec2StateChange{InstanceID: t.now.ID,
			Current: ec2StateOf(t.now.State), Previous: ec2StateOf(t.was.State)})
	}
	c.reply(http.StatusOK, ec2XML(resp), effect, "")
}

// ---- the XML ------------------------------------------------------------------

// ec2Account is the account id the fake cloud's reservations belong to.
const ec2Account = "000000000000"

type ec2Tag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type ec2State struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

func ec2StateOf(state string) ec2State {
	if state == "terminated" {
		return ec2State{Code: 48, Name: state}
	}
	return ec2State{Code: 16, Name: "running"}
}

type ec2Instance struct {
	InstanceID   string   `xml:"instanceId"`
	ImageID      string   `xml:"imageId,omitempty"`
	State        ec2State `xml:"instanceState"`
	InstanceType string   `xml:"instanceType"`
	LaunchTime   string   `xml:"launchTime"`
	Zone         string   `xml:"placement>availabilityZone"`
	ClientToken  string   `xml:"clientToken,omitempty"`
	Tags         []ec2Tag `xml:"tagSet>item"`
}

func ec2InstanceOf(st *vmState) ec2Instance {
	in := ec2Instance{
		InstanceID:   st.vm.ID,
		ImageID:      st.wire.image,
		State:        ec2StateOf(st.vm.State),
		InstanceType: st.vm.Size,
		LaunchTime:   st.vm.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
		Zone:         st.vm.Region + "a",
		ClientToken:  st.vm.ClientToken,
	}
	for _, t := range st.wire.tags {
		in.Tags = append(in.Tags, ec2Tag{Key: t[0], Value: t[1]})
	}
	return in
}

// ec2Instance renders a VM the server holds.
func (s *CloudServer) ec2Instance(vm VM) ec2Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := *s.byID[vm.ID]
	st.vm = vm
	return ec2InstanceOf(&st)
}

type ec2RunResponse struct {
	XMLName       xml.Name      `xml:"RunInstancesResponse"`
	Xmlns         string        `xml:"xmlns,attr"`
	RequestID     string        `xml:"requestId"`
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []ec2Instance `xml:"instancesSet>item"`
}

type ec2Reservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []ec2Instance `xml:"instancesSet>item"`
}

type ec2DescribeResponse struct {
	XMLName      xml.Name         `xml:"DescribeInstancesResponse"`
	Xmlns        string           `xml:"xmlns,attr"`
	RequestID    string           `xml:"requestId"`
	Reservations []ec2Reservation `xml:"reservationSet>item"`
}

type ec2ModifyResponse struct {
	XMLName   xml.Name `xml:"ModifyInstanceAttributeResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	RequestID string   `xml:"requestId"`
	Return    bool     `xml:"return"`
}

type ec2StateChange struct {
	InstanceID string   `xml:"instanceId"`
	Current    ec2State `xml:"currentState"`
	Previous   ec2State `xml:"previousState"`
}

type ec2TerminateResponse struct {
	XMLName   xml.Name         `xml:"TerminateInstancesResponse"`
	Xmlns     string           `xml:"xmlns,attr"`
	RequestID string           `xml:"requestId"`
	Instances []ec2StateChange `xml:"instancesSet>item"`
}

type ec2ErrorResponse struct {
	XMLName   xml.Name `xml:"Response"`
	Code      string   `xml:"Errors>Error>Code"`
	Message   string   `xml:"Errors>Error>Message"`
	RequestID string   `xml:"RequestID"`
}

// ec2RequestID names the answer after the ledger record it belongs to.
func ec2RequestID(c *rctx) string { return fmt.Sprintf("workproof-%08d", c.rec.Seq) }

func ec2XML(v any) []byte {
	b, err := xml.Marshal(v)
	if err != nil {
		// Only our own plain types are marshalled here.
		panic(fmt.Sprintf("fakes: marshal %T: %v", v, err))
	}
	return append([]byte(xml.Header), b...)
}

// ec2API is the EC2 Query protocol's way of answering.
type ec2API struct{}

func (ec2API) contentType() string { return "text/xml;charset=UTF-8" }

// ec2Codes translates the fakes' generic codes to EC2's, so that the SDK's
// retryer and error types treat a fault as they treat the real thing.
var ec2Codes = map[string]string{
	CodeInvalidRequest:  "InvalidParameterValue",
	CodeTooLarge:        "InvalidParameterValue",
	CodeUnknownEndpoint: "InvalidAction",
	CodeUnavailable:     "Unavailable",
	CodeShuttingDown:    "Unavailable",
	CodeThrottled:       "RequestLimitExceeded",
	CodeInternal:        "InternalError",
}

func (ec2API) errorBody(_ int, code, msg string) []byte {
	if c, ok := ec2Codes[code]; ok {
		code = c
	}
	return ec2XML(ec2ErrorResponse{Code: code, Message: msg, RequestID: "workproof"})
}
