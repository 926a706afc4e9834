package auditchain

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// The record headers that carry a producer signature.
const (
	KeyIDHeader = "auditchain-key-id"
	SigHeader   = "auditchain-sig"
)

// EventMsg is the signed message of DESIGN.md §4.1:
// "auditchain/v1/event\0" || lp(tenant_id) || lp(value).
func EventMsg(tenantID string, value []byte) []byte {
	const domain = "auditchain/v1/event\x00"
	m := make([]byte, 0, len(domain)+8+len(tenantID)+len(value))
	m = append(m, domain...)
	m = binary.BigEndian.AppendUint32(m, uint32(len(tenantID)))
	m = append(m, tenantID...)
	m = binary.BigEndian.AppendUint32(m, uint32(len(value)))
	return append(m, value...)
}

// SigningKey is a producer's Ed25519 key and its id. Its String and
// GoString show the key id and public key, never the secret.
type SigningKey struct {
	KeyID string
	key   ed25519.PrivateKey
}

// KeyError says why a secret key cannot be used.
type KeyError struct {
	Path   string // empty for keys from bytes
	Reason string
}

func (e *KeyError) Error() string {
	if e.Path == "" {
		return "secret key: " + e.Reason
	}
	return e.Path + ": " + e.Reason
}

// SigningKeyFromSeed makes a key from a caller's 32-byte Ed25519 seed.
func SigningKeyFromSeed(seed []byte, keyID string) (*SigningKey, error) {
	if keyID == "" {
		return nil, &KeyError{Reason: "the key id must not be empty"}
	}
	if len(seed) != ed25519.SeedSize {
		return nil, &KeyError{Reason: fmt.Sprintf("an Ed25519 secret seed is 32 bytes, got %d", len(seed))}
	}
	return &SigningKey{KeyID: keyID, key: ed25519.NewKeyFromSeed(seed)}, nil
}

// LoadSigningKey reads the hex seed `auditchain keygen` writes, refusing a
// file that group or others can access.
func LoadSigningKey(path, keyID string) (*SigningKey, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, &KeyError{Path: path, Reason: err.Error()}
	}
	if mode := info.Mode().Perm(); mode&0o077 != 0 {
		return nil, &KeyError{Path: path, Reason: fmt.Sprintf(
			"is accessible by group or others (mode %03o); a secret key must be private to its owner: chmod 600 %s", mode, path)}
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, &KeyError{Path: path, Reason: err.Error()}
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, &KeyError{Path: path, Reason: "not an Ed25519 secret seed (invalid hex)"}
	}
	if len(seed) != ed25519.SeedSize {
		return nil, &KeyError{Path: path, Reason: fmt.Sprintf(
			"not an Ed25519 secret seed: expected 32 bytes (64 hex characters), found %d", len(seed))}
	}
	return SigningKeyFromSeed(seed, keyID)
}

// PublicKey is the key's public half.
func (k SigningKey) PublicKey() ed25519.PublicKey { return k.key.Public().(ed25519.PublicKey) }

// Sign returns the 64-byte auditchain-sig of value for tenantID.
func (k *SigningKey) Sign(tenantID string, value []byte) []byte {
	return ed25519.Sign(k.key, EventMsg(tenantID, value))
}

func (k SigningKey) String() string {
	return fmt.Sprintf("SigningKey{KeyID: %q, PublicKey: %x}", k.KeyID, []byte(k.PublicKey()))
}

// GoString keeps %#v from printing the secret.
func (k SigningKey) GoString() string { return k.String() }
