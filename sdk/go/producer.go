package auditchain

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// Signer encodes and signs events into records without touching Kafka: for
// publishing through a caller's own client (an outbox relay inside its own
// transaction, say).
type Signer struct {
	Key      *SigningKey
	SchemaID uint32
}

// Record returns the record for event: key = tenant id, value = framed Avro,
// the two signature headers. Topic is left for the caller (or Producer) to set.
func (s Signer) Record(event AuditEvent) (*kgo.Record, error) {
	if s.Key == nil {
		return nil, errors.New("auditchain: Signer has no key")
	}
	value, err := event.Encode(s.SchemaID)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{
		Key:   []byte(event.TenantID),
		Value: value,
		Headers: []kgo.RecordHeader{
			{Key: KeyIDHeader, Value: []byte(s.Key.KeyID)},
			{Key: SigHeader, Value: s.Key.Sign(event.TenantID, value)},
		},
	}, nil
}

// RegistryError is a failure to register or look up the AuditEvent schema.
type RegistryError struct {
	URL, Subject string
	Err          error
}

func (e *RegistryError) Error() string {
	return fmt.Sprintf("schema registry %s, subject %q: %v", e.URL, e.Subject, e.Err)
}

func (e *RegistryError) Unwrap() error { return e.Err }

// SchemaIDFromRegistry registers (or, with register false, looks up) the
// AuditEvent schema under subject and returns its id.
func SchemaIDFromRegistry(ctx context.Context, url, subject string, register bool, opts ...sr.ClientOpt) (uint32, error) {
	cl, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(url)}, opts...)...)
	if err != nil {
		return 0, &RegistryError{url, subject, err}
	}
	schema := sr.Schema{Schema: AuditEventSchema, Type: sr.TypeAvro}
	var ss sr.SubjectSchema
	if register {
		ss, err = cl.CreateSchema(ctx, subject, schema)
	} else {
		ss, err = cl.LookupSchema(ctx, subject, schema)
	}
	if err != nil {
		return 0, &RegistryError{url, subject, err}
	}
	return uint32(ss.ID), nil
}

// Config configures a Producer.
type Config struct {
	Brokers []string
	Topic   string
	Key     *SigningKey
	// RegistryURL: the schema is registered (LookupOnly: looked up) under
	// "<Topic>-value". Without it, SchemaID is used as is.
	RegistryURL  string
	RegistryOpts []sr.ClientOpt
	LookupOnly   bool
	SchemaID     uint32
	// TransactionalID makes Begin/Commit/Abort available.
	TransactionalID string
	// KafkaOpts are applied first; idempotence, acks=all and the
	// murmur2 key partitioner are applied after them.
	KafkaOpts []kgo.Opt
}

// Producer signs and publishes AuditEvents with an idempotent franz-go client.
type Producer struct {
	topic  string
	signer Signer
	client *kgo.Client
	txn    bool

	mu   sync.Mutex
	errs []error
}

// NewProducer resolves the schema id and connects.
func NewProducer(ctx context.Context, cfg Config) (*Producer, error) {
	switch {
	case cfg.Topic == "":
		return nil, errors.New("auditchain: Config.Topic is empty")
	case cfg.Key == nil:
		return nil, errors.New("auditchain: Config.Key is nil")
	case len(cfg.Brokers) == 0:
		return nil, errors.New("auditchain: Config.Brokers is empty")
	case cfg.RegistryURL == "" && cfg.SchemaID == 0:
		return nil, errors.New("auditchain: set Config.RegistryURL, or Config.SchemaID when there is no registry")
	}
	id := cfg.SchemaID
	if cfg.RegistryURL != "" {
		var err error
		if id, err = SchemaIDFromRegistry(ctx, cfg.RegistryURL, cfg.Topic+"-value", !cfg.LookupOnly, cfg.RegistryOpts...); err != nil {
			return nil, err
		}
	}
	opts := append(append([]kgo.Opt{}, cfg.KafkaOpts...),
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// murmur2 of the key, as the Java client and librdkafka's
		// murmur2_random: a tenant lands on the same partition whichever
		// SDK publishes it, so it has one chain.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	)
	if cfg.TransactionalID != "" {
		opts = append(opts, kgo.TransactionalID(cfg.TransactionalID))
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("auditchain: creating the Kafka client: %w", err)
	}
	return &Producer{topic: cfg.Topic, signer: Signer{cfg.Key, id}, client: client, txn: cfg.TransactionalID != ""}, nil
}

// SchemaID is the id values are framed with.
func (p *Producer) SchemaID() uint32 { return p.signer.SchemaID }

// Publish signs event and waits until Kafka has it.
func (p *Producer) Publish(ctx context.Context, event AuditEvent) error {
	r, err := p.record(event)
	if err != nil {
		return err
	}
	if err := p.client.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("auditchain: publishing to %s: %w", p.topic, err)
	}
	return nil
}

// PublishAsync signs event and enqueues it; Flush waits for it and reports
// failures. done, if not nil, is called with the delivery result.
func (p *Producer) PublishAsync(ctx context.Context, event AuditEvent, done func(*kgo.Record, error)) error {
	r, err := p.record(event)
	if err != nil {
		return err
	}
	p.client.Produce(ctx, r, func(r *kgo.Record, err error) {
		if err != nil {
			p.mu.Lock()
			p.errs = append(p.errs, err)
			p.mu.Unlock()
		}
		if done != nil {
			done(r, err)
		}
	})
	return nil
}

func (p *Producer) record(event AuditEvent) (*kgo.Record, error) {
	r, err := p.signer.Record(event)
	if err != nil {
		return nil, err
	}
	r.Topic = p.topic
	return r, nil
}

// Flush waits for every enqueued event and returns the delivery failures
// since the last Flush, if any.
func (p *Producer) Flush(ctx context.Context) error {
	if err := p.client.Flush(ctx); err != nil {
		return fmt.Errorf("auditchain: flushing: %w", err)
	}
	p.mu.Lock()
	errs := p.errs
	p.errs = nil
	p.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("auditchain: %d events not delivered to %s, first: %w", len(errs), p.topic, errs[0])
	}
	return nil
}

// Begin opens a transaction (Config.TransactionalID must be set).
func (p *Producer) Begin() error {
	if !p.txn {
		return errors.New("auditchain: Begin needs Config.TransactionalID")
	}
	if err := p.client.BeginTransaction(); err != nil {
		return fmt.Errorf("auditchain: beginning a transaction: %w", err)
	}
	return nil
}

// Commit flushes and commits the open transaction; if anything was not
// delivered the transaction is aborted and the error returned.
func (p *Producer) Commit(ctx context.Context) error {
	if err := p.Flush(ctx); err != nil {
		_ = p.client.EndTransaction(ctx, kgo.TryAbort)
		return err
	}
	if err := p.client.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("auditchain: committing the transaction: %w", err)
	}
	return nil
}

// Abort aborts the open transaction, dropping what it buffered.
func (p *Producer) Abort(ctx context.Context) error {
	if err := p.client.AbortBufferedRecords(ctx); err != nil {
		return fmt.Errorf("auditchain: aborting buffered records: %w", err)
	}
	if err := p.client.EndTransaction(ctx, kgo.TryAbort); err != nil {
		return fmt.Errorf("auditchain: aborting the transaction: %w", err)
	}
	return nil
}

// Client is the underlying franz-go client.
func (p *Producer) Client() *kgo.Client { return p.client }

// Close flushes and closes the client.
func (p *Producer) Close(ctx context.Context) error {
	err := p.Flush(ctx)
	p.client.Close()
	return err
}
