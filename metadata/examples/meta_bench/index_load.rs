//! Loads the listing index of a benchmark bucket on Cassandra with plain CQL inserts, for when
//! loading a million keys through `commit_object` would take too long on the machine at hand.
//!
//! Only the `listing` table is written (schema.cql): one row per key, `(bucket_id, shard, key,
//! version_id, pending = null, format, record)`, with the record the commit path would have
//! written. Keys loaded this way have no partition in `objects` and no manifest, chunk or ref
//! rows: a listing never reads those for a row that is not pending, so a page over these rows
//! measures the index read path (the shard merge and the decoding of each row), nothing else.
//!
//! Rows go in as unlogged batches of a few rows of one partition (one shard), a bounded number
//! of batches in flight.

use crate::BoxError;
use futures::stream::{self, StreamExt};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use std::time::{Duration, Instant};

/// Rows per batch: all of one shard (one partition), and small enough (about 3.5 KiB with the
/// benchmark's records) to stay under Cassandra's default 5 KiB batch-size warning.
const BATCH_ROWS: usize = 8;
/// Batches in flight at once.
const CONCURRENCY: usize = 32;
/// Keys grouped by shard at a time (the batches of one block are cut from it).
const BLOCK: usize = 4096;
/// Attempts per batch: the node is shared with other engineers' tests and may time out.
const ATTEMPTS: usize = 3;
/// Format version of the JSON records, as the backend writes them (`cql::FORMAT`).
const FORMAT: i32 = 1;

/// The shard of `key` in a bucket of `shard_count` shards: FNV-1a-64 of the key's bytes, modulo
/// the shard count. A copy of `shard_of` in metadata/src/scylla/listing.rs (kept private
/// there); [`IndexLoader::check_shard`] verifies on a committed key that both agree.
fn shard_of(key: &str, shard_count: u32) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(shard_count.max(1))) as i32
}

/// One listing row to write.
pub struct ListingRow {
    pub key: String,
    pub version_id: String,
    /// The object record as JSON, as the backend encodes it.
    pub record: String,
}

/// A session of its own on the benchmark's keyspace.
pub struct IndexLoader {
    session: Session,
    keyspace: String,
    insert: PreparedStatement,
    exists: PreparedStatement,
}

impl IndexLoader {
    /// Connects to `hosts`; the keyspace's tables must exist (the store created them).
    pub async fn connect(hosts: &[String], keyspace: &str) -> Result<IndexLoader, BoxError> {
        let session = SessionBuilder::new().known_nodes(hosts).build().await?;
        let mut insert = session
            .prepare(format!(
                "INSERT INTO {keyspace}.listing (bucket_id, shard, key, version_id, pending, format, record) \
                 VALUES (?, ?, ?, ?, null, ?, ?)"
            ))
            .await?;
        insert.set_is_idempotent(true);
        let exists = session
            .prepare(format!(
                "SELECT key FROM {keyspace}.listing WHERE bucket_id = ? AND shard = ? AND key = ?"
            ))
            .await?;
        Ok(IndexLoader {
            session,
            keyspace: keyspace.to_owned(),
            insert,
            exists,
        })
    }

    /// The node's `release_version`, for the report.
    pub async fn release_version(&self) -> Result<String, BoxError> {
        let result = self
            .session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await?;
        let (version,): (String,) = result.into_rows_result()?.single_row()?;
        Ok(version)
    }

    /// Waits, at most `limit`, until the node runs no compaction (or other SSTable task) of
    /// this keyspace: a freshly loaded table is compacted for minutes, which a bucket in service
    /// long since is not. Returns how long it waited and whether the tasks were done.
    pub async fn wait_for_compactions(
        &self,
        limit: Duration,
    ) -> Result<(Duration, bool), BoxError> {
        let start = Instant::now();
        loop {
            let result = self
                .session
                .query_unpaged("SELECT keyspace_name FROM system_views.sstable_tasks", ())
                .await?;
            let busy = result
                .into_rows_result()?
                .rows::<(String,)>()?
                .filter_map(Result::ok)
                .any(|(ks,)| ks == self.keyspace);
            if !busy || start.elapsed() >= limit {
                return Ok((start.elapsed(), !busy));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Fails unless the listing row of `key`, written by an ordinary commit, is in the shard
    /// this module computes: rows loaded here must land where the backend would put them.
    pub async fn check_shard(
        &self,
        bucket_id: &str,
        shard_count: u32,
        key: &str,
    ) -> Result<(), BoxError> {
        let shard = shard_of(key, shard_count);
        let result = self
            .session
            .execute_unpaged(&self.exists, (bucket_id, shard, key))
            .await?;
        match result.into_rows_result()?.maybe_first_row::<(String,)>()? {
            Some(_) => Ok(()),
            None => Err(format!(
                "the listing row of committed key `{key}` is not in shard {shard}: \
                 this benchmark's shard function no longer matches the backend's"
            )
            .into()),
        }
    }

    /// Writes the listing rows of `indices` (each made by `row`) into the bucket's index.
    /// Returns the number of rows and the time taken.
    pub async fn load(
        &self,
        bucket_id: &str,
        shard_count: u32,
        indices: &[u64],
        row: impl Fn(u64) -> ListingRow,
    ) -> Result<(u64, Duration), BoxError> {
        let start = Instant::now();
        let shards = shard_count.max(1);
        let batches = indices.chunks(BLOCK).flat_map(|block| {
            let mut by_shard: Vec<Vec<ListingRow>> = (0..shards).map(|_| Vec::new()).collect();
            for &i in block {
                let r = row(i);
                by_shard[shard_of(&r.key, shards) as usize].push(r);
            }
            let mut out = Vec::new();
            for (shard, mut rows) in by_shard.into_iter().enumerate() {
                while !rows.is_empty() {
                    let rest = rows.split_off(rows.len().min(BATCH_ROWS));
                    out.push((shard as i32, std::mem::replace(&mut rows, rest)));
                }
            }
            out
        });
        let mut written = stream::iter(batches)
            .map(|(shard, rows)| self.write_batch(bucket_id, shard, rows))
            .buffer_unordered(CONCURRENCY);
        let mut done = 0u64;
        let mut next_report = 100_000u64;
        while let Some(result) = written.next().await {
            done += result?;
            if done >= next_report {
                eprintln!("  index rows written: {done} ({:.0?})", start.elapsed());
                next_report += 100_000;
            }
        }
        Ok((done, start.elapsed()))
    }

    async fn write_batch(
        &self,
        bucket_id: &str,
        shard: i32,
        rows: Vec<ListingRow>,
    ) -> Result<u64, BoxError> {
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in &rows {
            batch.append_statement(self.insert.clone());
        }
        batch.set_is_idempotent(true);
        let values: Vec<_> = rows
            .iter()
            .map(|r| (bucket_id, shard, &r.key, &r.version_id, FORMAT, &r.record))
            .collect();
        let mut attempt = 1;
        loop {
            match self.session.batch(&batch, &values).await {
                Ok(_) => return Ok(rows.len() as u64),
                Err(e) if attempt < ATTEMPTS => {
                    eprintln!("  index batch failed (attempt {attempt}, retrying): {e}");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
