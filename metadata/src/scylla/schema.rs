//! Creating the keyspace and tables (from `schema.cql`) and preparing every statement once.
//!
//! Statements are prepared at connect so that a typo or a schema mismatch fails the gateway
//! at startup, not on the first request that needs the statement, and so that every request
//! is a prepared execution (token-aware routing, no CQL parsing per request).

use super::config::ScyllaConfig;
use super::cql::backend;
use crate::Result;
use ::scylla::client::session::Session;
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::statement::Statement;

/// The schema, with `{keyspace}` and `{replication}` placeholders.
pub(crate) const SCHEMA_CQL: &str = include_str!("../../schema.cql");

/// The schema's statements with the placeholders substituted, comments removed. On ScyllaDB
/// the keyspace is created without tablets: lightweight transactions, which every commit uses,
/// are not supported on tablet keyspaces by the ScyllaDB releases this was written against.
pub(crate) fn schema_statements(config: &ScyllaConfig, scylla: bool) -> Vec<String> {
    let text: String = SCHEMA_CQL
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let replication = config.replication.to_cql();
    let keyspace_options = if scylla {
        format!("{replication} AND tablets = {{'enabled': false}}")
    } else {
        replication
    };
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace("{keyspace}", &config.keyspace)
                .replace("{replication}", &keyspace_options)
        })
        .collect()
}

/// The table a `CREATE TABLE IF NOT EXISTS ks.name (...)` statement creates.
fn created_table(statement: &str) -> Option<&str> {
    let rest = statement.strip_prefix("CREATE TABLE IF NOT EXISTS ")?;
    let name = rest.split(|c: char| c.is_whitespace() || c == '(').next()?;
    Some(name.rsplit('.').next().unwrap_or(name))
}

/// Whether the cluster is ScyllaDB (it has `system_schema.scylla_tables`; Cassandra has not).
async fn is_scylla(session: &Session) -> bool {
    session
        .query_unpaged(
            "SELECT keyspace_name FROM system_schema.scylla_tables LIMIT 1",
            (),
        )
        .await
        .is_ok()
}

/// The tables that already exist in the keyspace.
async fn existing_tables(session: &Session, keyspace: &str) -> Result<Vec<String>> {
    let what = "reading the schema";
    let result = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .map_err(backend(what))?;
    let rows = result.into_rows_result().map_err(backend(what))?;
    let names = rows
        .rows::<(String,)>()
        .map_err(backend(what))?
        .map(|r| r.map(|(name,)| name))
        .collect::<std::result::Result<Vec<String>, _>>()
        .map_err(backend(what))?;
    Ok(names)
}

/// Creates the keyspace and the tables when missing. Tables that exist are not created again,
/// so gateways restarting against a live cluster send no DDL at all: concurrent `CREATE TABLE
/// IF NOT EXISTS` through several coordinators is how two gateways could create conflicting
/// tables, so a new multi-node cluster is best initialised by starting one gateway first. The
/// driver waits for schema agreement after each DDL statement, so the tables exist on every
/// node before statements are prepared.
pub(crate) async fn apply_schema(session: &Session, config: &ScyllaConfig) -> Result<()> {
    let scylla = is_scylla(session).await;
    let existing = existing_tables(session, &config.keyspace).await?;
    for cql in schema_statements(config, scylla) {
        if created_table(&cql).is_some_and(|t| existing.iter().any(|e| e == t)) {
            continue;
        }
        session
            .query_unpaged(cql, ())
            .await
            .map_err(backend("creating the schema"))?;
    }
    Ok(())
}

/// How a statement runs.
#[derive(Clone, Copy)]
enum Kind {
    /// A plain read or write that may be retried by the driver.
    Idempotent,
    /// A lightweight transaction (never blindly retried: a retry could apply twice).
    Lwt,
    /// A read that must see the outcome of in-flight LWTs (SERIAL/LOCAL_SERIAL consistency).
    SerialRead,
    /// A paged scan, 1,000 rows per page.
    Scan,
}

macro_rules! statements {
    ($($name:ident: $kind:ident => $cql:literal,)*) => {
        /// Every statement of the backend, prepared once at connect. `{ks}` in the text is the
        /// keyspace.
        pub(crate) struct Statements {
            $(pub $name: PreparedStatement,)*
        }

        impl Statements {
            pub(crate) async fn prepare(session: &Session, config: &ScyllaConfig) -> Result<Self> {
                Ok(Statements {
                    $($name: prepare(session, config, Kind::$kind, $cql).await?,)*
                })
            }
        }
    };
}

async fn prepare(
    session: &Session,
    config: &ScyllaConfig,
    kind: Kind,
    cql: &str,
) -> Result<PreparedStatement> {
    let mut statement = Statement::new(cql.replace("{ks}", &config.keyspace));
    statement.set_consistency(config.consistency);
    statement.set_serial_consistency(Some(config.serial_consistency));
    match kind {
        Kind::Idempotent => statement.set_is_idempotent(true),
        Kind::Lwt => {
            statement.set_is_idempotent(false);
            statement.set_request_timeout(config.lwt_timeout);
        }
        Kind::SerialRead => {
            statement.set_consistency(config.serial_read_consistency());
            statement.set_is_idempotent(true);
        }
        Kind::Scan => {
            statement.set_page_size(1000);
            statement.set_is_idempotent(true);
        }
    }
    session
        .prepare(statement)
        .await
        .map_err(backend("preparing a statement"))
}

// The decoders in `records.rs` read rows by position: the column lists of the SELECTs below
// must keep the order of the row types there (a test checks the columns exist).

statements! {
    // buckets: every write is an LWT (names are unique).
    bucket_insert: Lwt => "INSERT INTO {ks}.buckets (name, id, created, owner, versioning, shard_count) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
    bucket_get: Idempotent => "SELECT name, id, created, owner, versioning, shard_count FROM {ks}.buckets WHERE name = ?",
    bucket_get_live: Idempotent => "SELECT id, deleting_since FROM {ks}.buckets WHERE name = ?",
    bucket_scan: Scan => "SELECT name, id, created, owner, versioning, shard_count FROM {ks}.buckets",
    bucket_delete: Lwt => "DELETE FROM {ks}.buckets WHERE name = ? IF id = ?",
    bucket_set_deleting: Lwt => "UPDATE {ks}.buckets SET deleting_since = ? WHERE name = ? IF id = ?",
    bucket_set_versioning: Lwt => "UPDATE {ks}.buckets SET versioning = ? WHERE name = ? IF EXISTS",

    // objects: one partition per key; every write is an LWT on the static `head` (the batches
    // below), so a commit is a compare-and-set of the key's current version.
    object_head: Idempotent => "SELECT head, head_seq, fenced, seq, format, record, manifest_head FROM {ks}.objects WHERE bucket_id = ? AND key = ? LIMIT 1",
    object_head_serial: SerialRead => "SELECT head, head_seq, fenced, seq, format, record, manifest_head FROM {ks}.objects WHERE bucket_id = ? AND key = ? LIMIT 1",
    object_version_at: Idempotent => "SELECT format, record, manifest_head FROM {ks}.objects WHERE bucket_id = ? AND key = ? AND seq = ?",
    object_set_head: Lwt => "UPDATE {ks}.objects SET head = ?, head_seq = ? WHERE bucket_id = ? AND key = ? IF head = ? AND head_seq = ? AND fenced = null",
    object_clear_head: Lwt => "UPDATE {ks}.objects SET head = null, head_seq = ? WHERE bucket_id = ? AND key = ? IF head = ? AND head_seq = ?",
    object_fence: Lwt => "UPDATE {ks}.objects SET fenced = true WHERE bucket_id = ? AND key = ? IF head = null",
    object_unfence: Lwt => "UPDATE {ks}.objects SET fenced = null WHERE bucket_id = ? AND key = ? IF fenced = true",
    object_version_insert: Idempotent => "INSERT INTO {ks}.objects (bucket_id, key, seq, version_id, size, delete_marker, format, record, manifest_head) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    object_version_delete: Idempotent => "DELETE FROM {ks}.objects WHERE bucket_id = ? AND key = ? AND seq = ?",
    object_stats_scan: Scan => "SELECT head, version_id, size, delete_marker FROM {ks}.objects",

    // listing: the sharded index, written with the commit's sequence number as timestamp.
    listing_put: Idempotent => "INSERT INTO {ks}.listing (bucket_id, shard, key, version_id, pending, format, record) VALUES (?, ?, ?, ?, null, ?, ?) USING TIMESTAMP ?",
    listing_pending: Idempotent => "UPDATE {ks}.listing USING TIMESTAMP ? SET pending = ? WHERE bucket_id = ? AND shard = ? AND key = ?",
    listing_delete: Idempotent => "DELETE FROM {ks}.listing USING TIMESTAMP ? WHERE bucket_id = ? AND shard = ? AND key = ?",
    listing_read: Idempotent => "SELECT key, pending, format, record FROM {ks}.listing WHERE bucket_id = ? AND shard = ? AND key >= ? LIMIT ?",
    listing_scan_shard: Scan => "SELECT key, pending FROM {ks}.listing WHERE bucket_id = ? AND shard = ?",

    // manifests: row idx -1 is the header (size = number of entries), written for every
    // version, so an empty manifest differs from an unknown or released version.
    manifest_insert: Idempotent => "INSERT INTO {ks}.manifests (version_id, idx, chunk_id, size) VALUES (?, ?, ?, ?)",
    manifest_header_insert: Idempotent => "INSERT INTO {ks}.manifests (version_id, idx, size) VALUES (?, -1, ?)",
    manifest_scan: Scan => "SELECT idx, chunk_id, size FROM {ks}.manifests WHERE version_id = ?",
    manifest_delete: Idempotent => "DELETE FROM {ks}.manifests WHERE version_id = ?",

    // chunks
    chunk_place: Idempotent => "UPDATE {ks}.chunks SET size = ?, replicas = replicas + ?, created = ?, last_verified = ?, unreferenced_since = 0 WHERE prefix = ? AND chunk_id = ?",
    chunk_mark_referenced: Idempotent => "UPDATE {ks}.chunks SET unreferenced_since = 0 WHERE prefix = ? AND chunk_id = ?",
    chunk_mark_referenced_if_exists: Lwt => "UPDATE {ks}.chunks SET unreferenced_since = 0 WHERE prefix = ? AND chunk_id = ? IF size > 0",
    chunk_mark_unreferenced: Idempotent => "UPDATE {ks}.chunks SET unreferenced_since = ? WHERE prefix = ? AND chunk_id = ?",
    chunk_get: Idempotent => "SELECT chunk_id, size, replicas, created, last_verified, unreferenced_since FROM {ks}.chunks WHERE prefix = ? AND chunk_id = ?",
    chunk_scan: Scan => "SELECT chunk_id, size, replicas, created, last_verified, unreferenced_since FROM {ks}.chunks WHERE prefix = ? AND chunk_id > ?",
    chunk_scan_all: Scan => "SELECT chunk_id, size, replicas, created, last_verified, unreferenced_since FROM {ks}.chunks WHERE prefix = ?",
    chunk_add_replica: Idempotent => "UPDATE {ks}.chunks SET replicas = replicas + ? WHERE prefix = ? AND chunk_id = ?",
    chunk_drop_replica: Idempotent => "UPDATE {ks}.chunks SET replicas = replicas - ? WHERE prefix = ? AND chunk_id = ?",
    chunk_delete: Lwt => "DELETE FROM {ks}.chunks WHERE prefix = ? AND chunk_id = ? IF unreferenced_since = ?",
    chunk_stats_scan: Scan => "SELECT size FROM {ks}.chunks",

    // chunk refs
    ref_insert: Idempotent => "INSERT INTO {ks}.chunk_refs (chunk_id, ref_id) VALUES (?, ?)",
    ref_delete: Idempotent => "DELETE FROM {ks}.chunk_refs WHERE chunk_id = ? AND ref_id = ?",
    ref_any: Idempotent => "SELECT ref_id FROM {ks}.chunk_refs WHERE chunk_id = ? LIMIT 1",
    ref_count: Idempotent => "SELECT COUNT(*) FROM {ks}.chunk_refs WHERE chunk_id = ?",

    // multipart uploads
    upload_insert: Idempotent => "INSERT INTO {ks}.uploads (bucket_id, shard, key, upload_id, format, record) VALUES (?, ?, ?, ?, ?, ?)",
    upload_get: Idempotent => "SELECT format, record FROM {ks}.uploads WHERE bucket_id = ? AND shard = ? AND key = ? AND upload_id = ?",
    upload_delete: Idempotent => "DELETE FROM {ks}.uploads WHERE bucket_id = ? AND shard = ? AND key = ? AND upload_id = ?",
    upload_list_from: Idempotent => "SELECT key, upload_id, format, record FROM {ks}.uploads WHERE bucket_id = ? AND shard = ? AND key >= ? LIMIT ?",
    upload_list_after: Idempotent => "SELECT key, upload_id, format, record FROM {ks}.uploads WHERE bucket_id = ? AND shard = ? AND (key, upload_id) > (?, ?) LIMIT ?",
    upload_any: Idempotent => "SELECT upload_id FROM {ks}.uploads WHERE bucket_id = ? AND shard = ? LIMIT 1",
    // parts: the static `state` and every part row are written only by LWTs.
    upload_open: Lwt => "INSERT INTO {ks}.parts (upload_id, state, state_token) VALUES (?, 'open', 0) IF NOT EXISTS",
    upload_set_state: Lwt => "UPDATE {ks}.parts SET state = ?, state_token = ? WHERE upload_id = ? IF state = ?",
    upload_revert: Lwt => "UPDATE {ks}.parts SET state = 'open', state_token = 0 WHERE upload_id = ? IF state = ? AND state_token = ?",
    upload_state: SerialRead => "SELECT state, state_token FROM {ks}.parts WHERE upload_id = ? LIMIT 1",
    part_record: Lwt => "UPDATE {ks}.parts SET ref_id = ?, format = ?, record = ? WHERE upload_id = ? AND number = ? IF state = 'open' AND ref_id = ?",
    part_get: SerialRead => "SELECT ref_id, format, record FROM {ks}.parts WHERE upload_id = ? AND number = ?",
    part_scan: Scan => "SELECT number, ref_id, format, record FROM {ks}.parts WHERE upload_id = ? AND number > ?",
    parts_delete: Idempotent => "DELETE FROM {ks}.parts WHERE upload_id = ?",

    // nodes
    node_get: Idempotent => "SELECT node_id, format, heartbeat, first_seen, admin_state FROM {ks}.nodes WHERE node_id = ?",
    node_register: Idempotent => "UPDATE {ks}.nodes SET format = ?, heartbeat = ?, first_seen = ? WHERE node_id = ?",
    node_heartbeat: Idempotent => "UPDATE {ks}.nodes SET format = ?, heartbeat = ? WHERE node_id = ?",
    node_set_state: Idempotent => "UPDATE {ks}.nodes SET admin_state = ? WHERE node_id = ?",
    node_scan: Scan => "SELECT node_id, format, heartbeat, first_seen, admin_state FROM {ks}.nodes",
    node_event_insert: Idempotent => "INSERT INTO {ks}.node_events (node_id, at, id, format, record) VALUES (?, ?, now(), ?, ?)",
    node_events_of: Idempotent => "SELECT format, record FROM {ks}.node_events WHERE node_id = ? LIMIT ?",
    node_events_scan: Scan => "SELECT format, record FROM {ks}.node_events",

    // access keys: every write is an LWT (ids are unique).
    key_insert: Lwt => "INSERT INTO {ks}.access_keys (access_key_id, secret_key, name, created, is_root, can_create_buckets, permissions) VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
    key_get: Idempotent => "SELECT access_key_id, secret_key, name, created, is_root, can_create_buckets, permissions FROM {ks}.access_keys WHERE access_key_id = ?",
    key_scan: Scan => "SELECT access_key_id, secret_key, name, created, is_root, can_create_buckets, permissions FROM {ks}.access_keys",
    key_delete: Lwt => "DELETE FROM {ks}.access_keys WHERE access_key_id = ? IF EXISTS",
    key_set_permission: Lwt => "UPDATE {ks}.access_keys SET permissions[?] = ? WHERE access_key_id = ? IF EXISTS",
    key_drop_permission: Lwt => "DELETE permissions[?] FROM {ks}.access_keys WHERE access_key_id = ? IF EXISTS",

    // leases: every write is an LWT.
    lease_insert: Lwt => "INSERT INTO {ks}.leases (name, holder, expires_at) VALUES (?, ?, ?) IF NOT EXISTS",
    lease_renew: Lwt => "UPDATE {ks}.leases SET expires_at = ? WHERE name = ? IF holder = ?",
    lease_take: Lwt => "UPDATE {ks}.leases SET holder = ?, expires_at = ? WHERE name = ? IF holder = ? AND expires_at = ?",
    lease_release: Lwt => "DELETE FROM {ks}.leases WHERE name = ? IF holder = ?",

    // settings: initialised once by an LWT.
    setting_init: Lwt => "INSERT INTO {ks}.settings (name, value) VALUES (?, ?) IF NOT EXISTS",
    setting_get: Idempotent => "SELECT value FROM {ks}.settings WHERE name = ?",
    setting_get_serial: SerialRead => "SELECT value FROM {ks}.settings WHERE name = ?",
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUCKET_COLS: &str = "name, id, created, owner, versioning, shard_count";
    const CHUNK_COLS: &str = "chunk_id, size, replicas, created, last_verified, unreferenced_since";
    const KEY_COLS: &str =
        "access_key_id, secret_key, name, created, is_root, can_create_buckets, permissions";

    #[test]
    fn schema_is_substituted_and_split() {
        let mut config = ScyllaConfig::from_spec("h/test_ks").unwrap();
        config.replication = super::super::config::Replication::Simple { factor: 3 };
        let statements = schema_statements(&config, false);
        assert_eq!(statements.len(), 14, "{statements:#?}");
        assert!(!statements[0].contains("tablets"));
        assert!(schema_statements(&config, true)[0].ends_with(
            "'replication_factor': 3} AND tablets = {'enabled': false} AND durable_writes = true"
        ));
        assert_eq!(created_table(&statements[1]), Some("buckets"));
        assert_eq!(created_table(&statements[0]), None);
        assert!(statements[0].starts_with("CREATE KEYSPACE IF NOT EXISTS test_ks"));
        assert!(statements[0].contains("'replication_factor': 3"));
        for s in &statements[1..] {
            assert!(s.starts_with("CREATE TABLE IF NOT EXISTS test_ks."), "{s}");
        }
        assert!(statements
            .iter()
            .all(|s| !s.contains('{') || s.contains("'class'")));
    }

    #[test]
    fn column_lists_match_the_statements() {
        // The decoders in the backend read rows by position in these orders.
        for (cols, table) in [
            (BUCKET_COLS, "buckets"),
            (CHUNK_COLS, "chunks"),
            (KEY_COLS, "access_keys"),
        ] {
            assert!(SCHEMA_CQL.contains(table));
            for col in cols.split(", ") {
                assert!(
                    SCHEMA_CQL.contains(&format!("    {col} ")),
                    "{col} of {table}"
                );
            }
        }
    }
}
