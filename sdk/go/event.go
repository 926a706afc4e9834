// Package auditchain signs and publishes auditchain AuditEvents (DESIGN.md
// §1.1 and §4.1 of the auditchain repository) to Kafka with franz-go.
package auditchain

import (
	"crypto/rand"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// AuditEventSchema is schemas/AuditEvent.avsc of the auditchain repository.
//
//go:embed AuditEvent.avsc
var AuditEventSchema string

// Outcome is io.auditchain.v1.Outcome.
type Outcome int32

// The outcomes, in the schema's symbol order (their Avro enum index).
const (
	Success Outcome = iota
	Failure
	Denied
	Error
)

var outcomeSymbols = [...]string{"SUCCESS", "FAILURE", "DENIED", "ERROR"}

func (o Outcome) String() string {
	if o < 0 || int(o) >= len(outcomeSymbols) {
		return fmt.Sprintf("Outcome(%d)", int32(o))
	}
	return outcomeSymbols[o]
}

// AuditEvent is the v1 io.auditchain.v1.AuditEvent. Zero EventID and
// OccurredAt are filled in when the event is encoded: a random UUID and now.
type AuditEvent struct {
	EventID       string
	TenantID      string
	OccurredAt    time.Time // microsecond precision on the wire
	Actor         string
	Action        string
	Resource      string
	Outcome       Outcome
	CorrelationID *string
	Attributes    map[string]string
	Payload       []byte // nil: null
}

// InvalidEventError names a field the processor would quarantine.
type InvalidEventError struct {
	Field  string
	Reason string
}

func (e *InvalidEventError) Error() string {
	return fmt.Sprintf("invalid AuditEvent: %s %s", e.Field, e.Reason)
}

// NewEventID returns a random (version 4) UUID.
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// withDefaults fills EventID and OccurredAt and checks what the processor checks.
func (e AuditEvent) withDefaults() (AuditEvent, error) {
	if e.EventID == "" {
		e.EventID = NewEventID()
	}
	if e.OccurredAt.IsZero() {
		e.OccurredAt = time.Now()
	}
	switch {
	case e.TenantID == "":
		return e, &InvalidEventError{"tenant_id", "must not be empty"}
	case e.Action == "":
		return e, &InvalidEventError{"action", "must not be empty"}
	case e.Outcome < 0 || int(e.Outcome) >= len(outcomeSymbols):
		return e, &InvalidEventError{"outcome", fmt.Sprintf("must be one of %v, got %d", outcomeSymbols, int32(e.Outcome))}
	}
	return e, nil
}

// AvroBody encodes the event as Avro binary (no framing), filling defaults.
// The encoder is written out by hand: the schema is the fixed v1 contract and
// the test vectors check every byte.
func (e AuditEvent) AvroBody() ([]byte, error) {
	e, err := e.withDefaults()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 128+len(e.Payload))
	b = putString(b, e.EventID)
	b = putString(b, e.TenantID)
	b = putLong(b, e.OccurredAt.UnixMicro())
	b = putString(b, e.Actor)
	b = putString(b, e.Action)
	b = putString(b, e.Resource)
	b = putLong(b, int64(e.Outcome))
	if e.CorrelationID == nil {
		b = putLong(b, 0)
	} else {
		b = putString(putLong(b, 1), *e.CorrelationID)
	}
	if len(e.Attributes) > 0 {
		keys := make([]string, 0, len(e.Attributes))
		for k := range e.Attributes {
			keys = append(keys, k)
		}
		sort.Strings(keys) // deterministic bytes for the same event
		b = putLong(b, int64(len(keys)))
		for _, k := range keys {
			b = putString(putString(b, k), e.Attributes[k])
		}
	}
	b = putLong(b, 0)
	if e.Payload == nil {
		b = putLong(b, 0)
	} else {
		b = putBytes(putLong(b, 1), e.Payload)
	}
	return b, nil
}

// Encode returns the Confluent-framed value: 0x00, the schema id (uint32
// big-endian), the Avro body.
func (e AuditEvent) Encode(schemaID uint32) ([]byte, error) {
	body, err := e.AvroBody()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(out[1:], schemaID)
	return append(out, body...), nil
}

func putLong(b []byte, v int64) []byte {
	return binary.AppendUvarint(b, uint64((v<<1)^(v>>63)))
}

func putBytes(b []byte, s []byte) []byte { return append(putLong(b, int64(len(s))), s...) }

func putString(b []byte, s string) []byte { return append(putLong(b, int64(len(s))), s...) }

// Decode is the inverse of Encode: the schema id and the event.
func Decode(value []byte) (uint32, AuditEvent, error) {
	var e AuditEvent
	if len(value) < 5 || value[0] != 0 {
		return 0, e, errors.New("not a Confluent-framed value (magic byte 0 and a 4-byte schema id)")
	}
	id := binary.BigEndian.Uint32(value[1:5])
	r := reader{b: value[5:]}
	e.EventID = r.str()
	e.TenantID = r.str()
	e.OccurredAt = time.UnixMicro(r.long()).UTC()
	e.Actor = r.str()
	e.Action = r.str()
	e.Resource = r.str()
	e.Outcome = Outcome(r.long())
	if r.union() {
		s := r.str()
		e.CorrelationID = &s
	}
	for n := r.long(); n != 0 && r.err == nil; n = r.long() {
		if n < 0 { // a block with its byte size
			n = -n
			r.long()
		}
		if e.Attributes == nil {
			e.Attributes = map[string]string{}
		}
		for i := int64(0); i < n && r.err == nil; i++ {
			k := r.str()
			e.Attributes[k] = r.str()
		}
	}
	if r.union() {
		e.Payload = r.bytes()
		if e.Payload == nil {
			e.Payload = []byte{}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("bytes left over after the Avro body")
	}
	if r.err == nil && (e.Outcome < 0 || int(e.Outcome) >= len(outcomeSymbols)) {
		r.err = fmt.Errorf("outcome index %d out of range", int32(e.Outcome))
	}
	return id, e, r.err
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) long() int64 {
	if r.err != nil {
		return 0
	}
	u, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated or invalid Avro long")
		return 0
	}
	r.b = r.b[n:]
	return int64(u>>1) ^ -int64(u&1)
}

func (r *reader) bytes() []byte {
	n := r.long()
	if r.err != nil {
		return nil
	}
	if n < 0 || n > int64(len(r.b)) || n > math.MaxInt32 {
		r.err = errors.New("truncated Avro bytes")
		return nil
	}
	out := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return out
}

func (r *reader) str() string { return string(r.bytes()) }

func (r *reader) union() bool {
	switch i := r.long(); i {
	case 0:
		return false
	case 1:
		return true
	default:
		if r.err == nil {
			r.err = fmt.Errorf("union index %d out of range", i)
		}
		return false
	}
}
