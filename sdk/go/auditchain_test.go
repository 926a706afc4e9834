package auditchain

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

type vectors struct {
	ProducerSeed      string `json:"producer_seed"`
	ProducerPublicKey string `json:"producer_public_key"`
	Events            []struct {
		TenantID  string `json:"tenant_id"`
		Value     string `json:"value"`
		EventMsg  string `json:"event_msg"`
		Signature string `json:"signature"`
	} `json:"events"`
}

// repo is the auditchain repository this module sits in (AUDITCHAIN_REPO overrides).
func repo() string {
	if r := os.Getenv("AUDITCHAIN_REPO"); r != "" {
		return r
	}
	return filepath.Join("..", "..")
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(repo(), "schemas", "test-vectors", "chain-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(text, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Events) < 3 {
		t.Fatalf("only %d event vectors", len(v.Events))
	}
	return v
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEventSignatureVectors(t *testing.T) {
	v := loadVectors(t)
	key, err := SigningKeyFromSeed(unhex(t, v.ProducerSeed), "vectors")
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(key.PublicKey()); got != v.ProducerPublicKey {
		t.Fatalf("public key %s, want %s", got, v.ProducerPublicKey)
	}
	nonASCII := false
	for i, e := range v.Events {
		value := unhex(t, e.Value)
		if got := hex.EncodeToString(EventMsg(e.TenantID, value)); got != e.EventMsg {
			t.Errorf("events[%d]: event_msg %s, want %s", i, got, e.EventMsg)
		}
		id, event, err := Decode(value)
		if err != nil {
			t.Fatalf("events[%d]: %v", i, err)
		}
		if event.TenantID != e.TenantID {
			t.Errorf("events[%d]: tenant %q, want %q", i, event.TenantID, e.TenantID)
		}
		r, err := Signer{Key: key, SchemaID: id}.Record(event)
		if err != nil {
			t.Fatalf("events[%d]: %v", i, err)
		}
		if !bytes.Equal(r.Value, value) {
			t.Errorf("events[%d]: value\n %x\nwant\n %x", i, r.Value, value)
		}
		if string(r.Key) != e.TenantID {
			t.Errorf("events[%d]: key %q", i, r.Key)
		}
		if len(r.Headers) != 2 || r.Headers[0].Key != KeyIDHeader || string(r.Headers[0].Value) != "vectors" ||
			r.Headers[1].Key != SigHeader || hex.EncodeToString(r.Headers[1].Value) != e.Signature {
			t.Errorf("events[%d]: headers %v, want signature %s", i, r.Headers, e.Signature)
		}
		for _, c := range e.TenantID {
			nonASCII = nonASCII || c >= utf8.RuneSelf
		}
	}
	if !nonASCII {
		t.Error("the vectors have no non-ASCII tenant")
	}
}

func TestEmbeddedSchemaIsTheContract(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(repo(), "schemas", "AuditEvent.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	if AuditEventSchema != string(want) {
		t.Fatal("AuditEvent.avsc differs from schemas/AuditEvent.avsc: copy it again")
	}
}

func TestRoundTripAndDefaults(t *testing.T) {
	corr := "c-1"
	e := AuditEvent{TenantID: "zürich-ä", Actor: "a", Action: "user.login", Resource: "r", Outcome: Denied,
		CorrelationID: &corr, Attributes: map[string]string{"b": "2", "a": "1"}, Payload: []byte{0, 1}}
	value, err := e.Encode(7)
	if err != nil {
		t.Fatal(err)
	}
	id, back, err := Decode(value)
	if err != nil || id != 7 {
		t.Fatal(id, err)
	}
	if back.EventID == "" || len(back.EventID) != 36 || time.Since(back.OccurredAt) > time.Minute {
		t.Fatalf("defaults not filled: %+v", back)
	}
	e.EventID, e.OccurredAt = back.EventID, back.OccurredAt
	again, _ := e.Encode(7)
	if !bytes.Equal(again, value) || *back.CorrelationID != corr || back.Attributes["b"] != "2" || back.Outcome != Denied {
		t.Fatalf("round trip differs: %+v", back)
	}
	if NewEventID() == NewEventID() {
		t.Fatal("event ids repeat")
	}
}

func TestInvalidEventsAreNamed(t *testing.T) {
	for field, e := range map[string]AuditEvent{
		"tenant_id": {Action: "x"},
		"action":    {TenantID: "t"},
		"outcome":   {TenantID: "t", Action: "x", Outcome: 9},
	} {
		_, err := e.Encode(1)
		var ie *InvalidEventError
		if !errors.As(err, &ie) || ie.Field != field {
			t.Errorf("%s: got %v", field, err)
		}
	}
	if _, _, err := Decode([]byte{0, 0, 0, 0, 1, 2}); err == nil {
		t.Error("a truncated body decoded")
	}
}

func TestKeyFiles(t *testing.T) {
	v := loadVectors(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "p.secret")
	if err := os.WriteFile(path, []byte(v.ProducerSeed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := LoadSigningKey(path, "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{key.String(), fmt.Sprintf("%v %+v %#v %s", key, *key, key, key)} {
		if strings.Contains(s, v.ProducerSeed) || strings.Contains(s, v.ProducerSeed[:16]) {
			t.Fatalf("the secret is printed: %s", s)
		}
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigningKey(path, "p"); err == nil || !strings.Contains(err.Error(), "group or others (mode 640)") {
		t.Fatalf("a group-readable key was not refused: %v", err)
	}
	short := filepath.Join(dir, "short.secret")
	_ = os.WriteFile(short, []byte("abcd"), 0o600)
	if _, err := LoadSigningKey(short, "p"); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("short key: %v", err)
	}
	if _, err := LoadSigningKey(filepath.Join(dir, "missing"), "p"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing key: %v", err)
	}
}
