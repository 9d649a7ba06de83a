//! The PostgreSQL schema, as numbered migrations applied in order at open.
//!
//! Each migration runs once, inside one transaction, under an advisory lock, so replicas that
//! start together do not race; the applied versions are rows of `mcpzt_schema`. A database
//! whose schema is newer than this build knows is refused rather than written with old rules.
//! Never edit a released migration: add the next one.

/// `(version, SQL)`, oldest first.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
-- One row per certificate the CA issued. `record` is the same JSON document the sled backend
-- stores; the other columns are what the database must enforce or index.
CREATE TABLE mcpzt_certs (
    serial          text PRIMARY KEY CHECK (serial ~ '^[0-9a-f]{2,64}$'),
    record          text NOT NULL,
    issued_at       bigint NOT NULL,
    revoked         boolean NOT NULL DEFAULT false,
    -- The order revocations were committed in (replicas resync by it); set exactly when
    -- revoked, so a revocation cannot be recorded without one or undone by an update.
    revocation_seq  bigint UNIQUE,
    -- A certificate is renewed at most once.
    superseded_by   text UNIQUE,
    CHECK (revoked = (revocation_seq IS NOT NULL)),
    -- The column replicas index and the document every reader decodes say the same thing.
    CHECK (revoked = (COALESCE(record::jsonb -> 'revocation', 'null'::jsonb) <> 'null'::jsonb))
);
CREATE SEQUENCE mcpzt_revocation_seq;
CREATE INDEX mcpzt_certs_revoked ON mcpzt_certs (revocation_seq) WHERE revoked;

-- The CA's metadata (key 'ca').
CREATE TABLE mcpzt_meta (
    key    text PRIMARY KEY,
    value  text NOT NULL
);

-- The CRL number: one row, only ever incremented in place.
CREATE TABLE mcpzt_crl_number (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    n   bigint NOT NULL CHECK (n >= 0)
);
INSERT INTO mcpzt_crl_number (id, n) VALUES (true, 0);

-- A revocation can never be undone: an update may not clear it.
CREATE FUNCTION mcpzt_no_unrevoke() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.revoked AND NOT NEW.revoked THEN
        RAISE EXCEPTION 'certificate % is revoked; a revocation cannot be undone', OLD.serial;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER mcpzt_no_unrevoke BEFORE UPDATE ON mcpzt_certs
    FOR EACH ROW EXECUTE FUNCTION mcpzt_no_unrevoke();

-- Nor forgotten: records are never deleted (a deleted revocation would vanish from every CRL).
CREATE FUNCTION mcpzt_keep_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger keeps every certificate it issued; records cannot be deleted';
END $$;
CREATE TRIGGER mcpzt_no_delete BEFORE DELETE ON mcpzt_certs
    FOR EACH ROW EXECUTE FUNCTION mcpzt_keep_records();
CREATE TRIGGER mcpzt_no_truncate BEFORE TRUNCATE ON mcpzt_certs
    FOR EACH STATEMENT EXECUTE FUNCTION mcpzt_keep_records();

-- Nor can the CRL number go down.
CREATE FUNCTION mcpzt_crl_up() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.n < OLD.n THEN
        RAISE EXCEPTION 'the CRL number cannot go down (% to %)', OLD.n, NEW.n;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER mcpzt_crl_up BEFORE UPDATE ON mcpzt_crl_number
    FOR EACH ROW EXECUTE FUNCTION mcpzt_crl_up();
"#,
    ),
    (
        2,
        r#"
-- Foreign certificates seen revoked in a verified CRL of a trust, remembered until their CA's
-- notAfter so that a later CRL that leaves them out cannot bring them back. `key` is the
-- identity key the server refuses (TRUST:ISSUER-HASH:SERIAL).
CREATE TABLE mcpzt_foreign_revoked (
    key      text PRIMARY KEY,
    trust    text NOT NULL,
    issuer   text NOT NULL,
    serial   text NOT NULL CHECK (serial ~ '^[0-9a-f]{2,128}$'),
    seen_at  bigint NOT NULL,
    until    bigint NOT NULL
);
CREATE INDEX mcpzt_foreign_revoked_until ON mcpzt_foreign_revoked (until);
"#,
    ),
    (
        3,
        r#"
-- OAuth state (serve --oauth): clients, codes, grants, access and refresh tokens by kind.
-- Keys of codes and tokens are SHA-256 hashes (the secrets themselves are never stored);
-- values are the JSON records the embedded ledger keeps.
CREATE TABLE mcpzt_oauth (
    kind   text NOT NULL,
    key    text NOT NULL,
    value  bytea NOT NULL,
    PRIMARY KEY (kind, key)
);
"#,
    ),
];

/// The key of the advisory lock migrations run under (any constant unique to mcp-zt).
pub const MIGRATION_LOCK: i64 = 0x6d63_707a_745f_6d67;

/// The channel revocations are announced on; the payload is `SERIAL UNIX_MS`.
pub const REVOCATION_CHANNEL: &str = "mcpzt_revocations";
