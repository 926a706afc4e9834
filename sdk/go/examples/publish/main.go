// Command publish is the publisher the integration test
// (sdk/integration/run.py) drives. Configured from the environment:
//
//	KAFKA_BOOTSTRAP_SERVERS, AUDITCHAIN_TOPIC, AUDITCHAIN_KEY_FILE, AUDITCHAIN_KEY_ID,
//	SCHEMA_REGISTRY_URL (or AUDITCHAIN_SCHEMA_ID without a registry),
//	AUDITCHAIN_TENANTS (comma-separated), AUDITCHAIN_EVENTS (total, round-robin),
//	AUDITCHAIN_TRANSACTIONAL_ID (optional: all in one transaction).
//
// It prints one JSON line with the publish rate (encoding and signing included).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	auditchain "github.com/auditchain/auditchain/sdk/go"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "publish:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	events, err := strconv.Atoi(os.Getenv("AUDITCHAIN_EVENTS"))
	if err != nil {
		return fmt.Errorf("AUDITCHAIN_EVENTS: %w", err)
	}
	tenants := strings.Split(os.Getenv("AUDITCHAIN_TENANTS"), ",")
	key, err := auditchain.LoadSigningKey(os.Getenv("AUDITCHAIN_KEY_FILE"), os.Getenv("AUDITCHAIN_KEY_ID"))
	if err != nil {
		return err
	}
	cfg := auditchain.Config{
		Brokers:         strings.Split(os.Getenv("KAFKA_BOOTSTRAP_SERVERS"), ","),
		Topic:           os.Getenv("AUDITCHAIN_TOPIC"),
		Key:             key,
		RegistryURL:     os.Getenv("SCHEMA_REGISTRY_URL"),
		TransactionalID: os.Getenv("AUDITCHAIN_TRANSACTIONAL_ID"),
	}
	if s := os.Getenv("AUDITCHAIN_SCHEMA_ID"); s != "" {
		id, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("AUDITCHAIN_SCHEMA_ID: %w", err)
		}
		cfg.SchemaID = uint32(id)
	}
	p, err := auditchain.NewProducer(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	started := time.Now()
	if cfg.TransactionalID != "" {
		if err := p.Begin(); err != nil {
			return err
		}
	}
	for i := 0; i < events; i++ {
		outcome := auditchain.Success
		if i%10 == 0 {
			outcome = auditchain.Denied
		}
		err := p.PublishAsync(ctx, auditchain.AuditEvent{
			TenantID:   tenants[i%len(tenants)],
			Actor:      fmt.Sprintf("user-%d", i%97),
			Action:     "document.read",
			Resource:   fmt.Sprintf("doc/%d", i),
			Outcome:    outcome,
			Attributes: map[string]string{"sdk": "go"},
		}, nil)
		if err != nil {
			return err
		}
	}
	if cfg.TransactionalID != "" {
		err = p.Commit(ctx)
	} else {
		err = p.Flush(ctx)
	}
	if err != nil {
		return err
	}
	secs := time.Since(started).Seconds()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"sdk": "go", "published": events, "seconds": secs, "events_per_second": int(float64(events) / secs),
	})
}
