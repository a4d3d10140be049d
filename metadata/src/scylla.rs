//! The ScyllaDB/Cassandra backend: many stateless gateways share one cluster.
//!
//! [`ScyllaStore::connect`] creates the keyspace and tables when missing (`schema.cql`, in this
//! crate) and prepares every statement once. All statements run at `LOCAL_QUORUM` (the Paxos
//! phase of lightweight transactions at `LOCAL_SERIAL`), both configurable in [`ScyllaConfig`].
//! Every scan is paged; no statement uses `ALLOW FILTERING` or a secondary index.
//!
//! # Where lightweight transactions are used, and why not elsewhere
//!
//! Cassandra orders plain writes by their (client or coordinator clock) timestamps and LWTs by
//! Paxos ballots. Mixing both on one row can let a plain write with a later timestamp silently
//! override a Paxos decision, or an LWT read a state a plain write is about to replace. So a
//! table is either written only through LWTs or not at all through them:
//! * `buckets`, `access_keys`, `leases`, `settings`: every write is an LWT (unique names,
//!   unique key ids, one lease holder, one stored value).
//! * `objects`: one partition per (bucket id, key), the commit point of the key. Every write is
//!   a conditional batch on its static `head` (a compare-and-set of the current version, see
//!   `objects.rs`). This makes `If-None-Match: *` and `If-Match` atomic, tells each commit
//!   exactly which version it replaced (so that version's refs are released exactly once even
//!   when two gateways overwrite one key at the same moment), and lets DeleteBucket fence a key
//!   whose commit is pending. Writers of different keys never share a Paxos instance.
//! * `parts`: the upload's static `state` and every part row are written by LWTs, so two
//!   uploads of one part number, completion and abort are each one unit (`multipart.rs`); the
//!   partition is deleted plainly once the upload has left `open` for good.
//! * `listing`: plain writes carrying the commit's sequence number as their timestamp, so the
//!   index converges to the last commit whatever order writes arrive in (`index.rs`).
//! * `manifests`, `chunk_refs`, `uploads`, `nodes`: plain writes only. Their rows are
//!   keyed by ids unique to one writer (version ids, ref ids, upload ids), or carry state a
//!   single writer owns (a node's heartbeat).
//! * `chunks` is the one deliberate exception: commits and repair update it with plain,
//!   idempotent writes (`replicas = replicas + {..}`, `unreferenced_since = 0`), and garbage
//!   collection deletes a row with `DELETE ... IF unreferenced_since = <observed>`, so a chunk
//!   that a commit marked referenced again after GC looked at it is not deleted. The Paxos read
//!   sees every plain write that completed at quorum before it. A plain write racing the delete
//!   itself wins when its timestamp is later, which leaves the row with the new replicas and
//!   `unreferenced_since = 0`; and `delete_chunk_if_unreferenced` re-checks
//!   the refs after deleting and restores the row if a ref appeared. (The remaining window
//!   needs a chunk unreferenced for the whole GC grace period to be reused within the
//!   milliseconds of the delete by a gateway whose clock lags; chunkd's own grace period
//!   still protects the bytes.)
//!
//! # Commit order, and what a reader sees if a gateway dies midway
//!
//! A commit (`commit_version`, steps in `objects.rs`) reads the key's partition, checks the
//! condition and, for a manifest naming chunks without a placement, that they have records,
//! all before writing anything. Then it writes, in this order:
//! 1. for each chunk: its refs (`chunk_refs`, `obj/<version id>#<index>`, one per manifest
//!    entry), then its `chunks` row (replicas, `unreferenced_since = 0`); and the manifest rows
//!    of the new version, with its header row (`idx` -1, the entry count): a version without a
//!    header is unknown or released, and `get_manifest` answers `NoSuchKey` for it, as the
//!    embedded backend does;
//! 2. the key's listing row marked pending, then a serial check that the bucket is live;
//! 3. the conditional batch on the key's partition (the commit point): the version becomes
//!    visible at once, whole, to every reader of the key;
//! 4. the listing row, then the release of the replaced version: its refs, its manifest, and
//!    the unreferenced mark of chunks left without refs.
//!
//! Killed before 3: the new version's manifest and refs exist but no object row points at
//! them. Readers still see the old version (or nothing); the chunks stay referenced, so they
//! are garbage that is never collected automatically (they cannot become dangling); the pending
//! listing row is reconciled by readers (it shows what the key's partition holds). Killed during
//! 4: the key already shows the new version and a listing reconciles its still-pending row; the
//! old version's leftover refs keep its chunks alive (garbage again, never a dangling object).
//! There is no state in which an object row names a manifest or chunk whose refs are gone:
//! refs are only ever released for a version no object row points at any more.
//!
//! The same holds for multipart: a part's refs are written before its row, and completion
//! commits the object row (with its own refs) before the parts' refs are released.
//!
//! # Leases
//!
//! A lease row holds `(holder, expires_at)`, both written only by LWTs. CQL conditions cannot
//! express `IF expires_at < now OR holder = me`, so acquisition is a compare-and-set on what
//! was observed: `INSERT ... IF NOT EXISTS` for a free lease, `UPDATE ... IF holder = me` to
//! renew, `UPDATE ... IF holder = <seen> AND expires_at = <seen>` to take an expired one. Of
//! two gateways taking the same expired lease, only one matches the observed values. Expiry
//! is compared with the caller's clock, so gateways' clocks must agree to well within the
//! lease TTL (NTP). `USING TTL` is not used: its granularity is a second and a row that
//! vanishes mid-compare-and-set makes the protocol harder to reason about.
//!
//! # Costs to know
//!
//! * A listing reads `shard_count` partitions of the index per page and re-reads the key's
//!   partition for each row still marked pending.
//! * DeleteBucket walks every row of the bucket's index (the live ones stop it at once).
//! * `stats`, `list_buckets`, `list_nodes`, `list_access_keys` scan their tables (paged).
//!   Buckets, nodes and keys are few; `stats` reads the whole objects and chunks tables and
//!   is meant for `/status` at a low rate.
//! * Repair, GC and draining walk the chunks table in id order (4,096 partitions, paged).

mod admin;
mod chunks;
mod config;
mod cql;
mod index;
mod listing;
mod multipart;
mod objects;
mod reads;
mod records;
mod refs;
mod schema;
mod store;
mod uploads;

pub use config::{Replication, ScyllaConfig, DEFAULT_KEYSPACE, DEFAULT_PORT};

use crate::Result;
use ::scylla::client::execution_profile::ExecutionProfile;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::policies::load_balancing::DefaultPolicy;
use cql::backend;
use schema::Statements;

/// Chunk rows, refs and manifest rows are written with at most this many requests in flight
/// per commit.
const WRITE_CONCURRENCY: usize = 32;

/// How many times a compare-and-set is retried when other writers keep changing the row.
const MAX_CAS_ATTEMPTS: usize = 32;

/// The metadata store on a ScyllaDB or Cassandra cluster. Cheap to share (`Arc`).
pub struct ScyllaStore {
    /// Shared with tasks that outlive a request (an unfinished upload claim's revert).
    session: std::sync::Arc<Session>,
    st: Statements,
    config: ScyllaConfig,
    /// Commits whose LWT answer was lost and that a serial read found applied.
    settled_by_read: std::sync::atomic::AtomicU64,
    /// Bucket name to id, as last read: lets a GET read the bucket row and the key's partition
    /// at the same time (`reads.rs`). Only a hint: the bucket row is read every time, and a
    /// different id there means the key is read again under the right one.
    bucket_ids: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl ScyllaStore {
    /// Connects, creates the keyspace and tables when missing, and prepares every statement.
    pub async fn connect(config: ScyllaConfig) -> Result<ScyllaStore> {
        let session = open_session(&config).await?;
        schema::apply_schema(&session, &config).await?;
        let st = Statements::prepare(&session, &config).await?;
        Ok(ScyllaStore {
            session: std::sync::Arc::new(session),
            st,
            config,
            settled_by_read: Default::default(),
            bucket_ids: Default::default(),
        })
    }

    /// The configuration this store was connected with.
    pub fn config(&self) -> &ScyllaConfig {
        &self.config
    }

    /// How many commits lost their LWT's answer (an error, such as a timeout) and were found
    /// applied by the serial read that follows: reported as done, not as failed. For tests.
    #[doc(hidden)]
    pub fn commits_settled_by_read(&self) -> u64 {
        self.settled_by_read
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops this store's keyspace with every table and row in it. For tests, which each
    /// create a keyspace of their own and must not leave it behind (a long suite would pile
    /// up hundreds of tables on the test node).
    pub async fn drop_keyspace(&self) -> Result<()> {
        self.session
            .query_unpaged(
                format!("DROP KEYSPACE IF EXISTS {}", self.config.keyspace),
                (),
            )
            .await
            .map_err(backend("dropping the keyspace"))?;
        Ok(())
    }
}

/// A driver session for `config`: its contact points, credentials, and datacenter-aware load
/// balancing when a local datacenter is named.
async fn open_session(config: &ScyllaConfig) -> Result<Session> {
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.hosts)
        .connection_timeout(config.connect_timeout);
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.user(user, password);
    }
    if let Some(dc) = &config.local_datacenter {
        let policy = DefaultPolicy::builder()
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false)
            .build();
        let profile = ExecutionProfile::builder()
            .load_balancing_policy(policy)
            .build();
        builder = builder.default_execution_profile_handle(profile.into_handle());
    }
    builder
        .build()
        .await
        .map_err(backend("connecting to Scylla/Cassandra"))
}

/// Connects to `config`'s nodes and drops its keyspace (see [`ScyllaStore::drop_keyspace`]),
/// without creating the schema first.
pub async fn drop_keyspace(config: &ScyllaConfig) -> Result<()> {
    let session = open_session(config).await?;
    // Keyspace names are validated identifiers (config::validate_keyspace).
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", config.keyspace), ())
        .await
        .map_err(backend("dropping the keyspace"))?;
    Ok(())
}
