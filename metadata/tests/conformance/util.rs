//! Builders for the records the cases commit.

use sdfbs_metadata::*;
use std::collections::BTreeMap;
use std::sync::Arc;

pub type Store = Arc<dyn MetadataStore>;

pub fn uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn bucket(name: &str) -> BucketRecord {
    BucketRecord {
        name: name.to_string(),
        id: uid(),
        created: now_millis(),
        owner: "AKOWNER".into(),
        versioning: VersioningState::Unversioned,
        shard_count: 4,
    }
}

/// A bucket, created.
pub async fn new_bucket(s: &Store, name: &str) -> BucketRecord {
    let b = bucket(name);
    s.create_bucket(b.clone()).await.unwrap();
    b
}

/// A distinct chunk id for each `n`.
pub fn chunk(n: u64) -> ChunkId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id[31] = 0xAB;
    ChunkId(id)
}

pub fn object(key: &str, size: u64, etag: &str) -> ObjectRecord {
    ObjectRecord {
        key: key.to_string(),
        version_id: uid(),
        size,
        etag: etag.to_string(),
        last_modified: now_millis(),
        content_type: Some("application/octet-stream".into()),
        headers: BTreeMap::from([("cache-control".to_string(), "no-cache".to_string())]),
        user_metadata: BTreeMap::from([("color".to_string(), "blue".to_string())]),
        checksums: BTreeMap::new(),
        checksum_type: None,
        parts: Vec::new(),
        delete_marker: false,
        owner: "AKOWNER".into(),
    }
}

pub const CHUNK_SIZE: u64 = 1 << 20;

pub fn manifest(chunks: &[ChunkId]) -> Vec<ManifestEntry> {
    chunks
        .iter()
        .map(|c| ManifestEntry {
            chunk: *c,
            size: CHUNK_SIZE,
        })
        .collect()
}

pub fn placements(chunks: &[ChunkId], nodes: &[&str]) -> Vec<ChunkPlacement> {
    chunks
        .iter()
        .map(|c| ChunkPlacement {
            chunk: *c,
            size: CHUNK_SIZE,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        })
        .collect()
}

/// Commits `key` made of `chunks` (placed on n1 and n2) with no condition.
pub async fn put(s: &Store, b: &BucketRecord, key: &str, chunks: &[ChunkId]) -> ObjectRecord {
    let o = object(
        key,
        CHUNK_SIZE * chunks.len() as u64,
        &format!("etag-{key}"),
    );
    s.commit_object(
        b,
        o.clone(),
        manifest(chunks),
        placements(chunks, &["n1", "n2"]),
        PutCondition::None,
    )
    .await
    .unwrap();
    o
}

/// Commits a small one-chunk object under each key (chunk ids unique per key index).
pub async fn put_keys(s: &Store, b: &BucketRecord, keys: &[String]) {
    futures::future::join_all(keys.iter().enumerate().map(|(i, k)| {
        let s = s.clone();
        let b = b.clone();
        let k = k.clone();
        async move {
            put(&s, &b, &k, &[chunk(1_000_000 + i as u64)]).await;
        }
    }))
    .await;
}

pub async fn refs(s: &Store, c: ChunkId) -> u64 {
    s.get_chunk(&c)
        .await
        .unwrap()
        .map(|r| r.ref_count)
        .unwrap_or(0)
}

pub fn query(
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    max: usize,
) -> ListQuery {
    ListQuery {
        prefix: prefix.to_string(),
        delimiter: delimiter.map(str::to_string),
        start_after: start_after.map(str::to_string),
        max_keys: max,
    }
}

/// Keys and common prefixes of one page.
pub async fn page(
    s: &Store,
    b: &BucketRecord,
    q: ListQuery,
) -> (Vec<String>, Vec<String>, ListPage) {
    let p = s.list_objects(b, &q).await.unwrap();
    let keys = p.objects.iter().map(|o| o.key.clone()).collect();
    (keys, p.common_prefixes.clone(), p)
}

/// Every entry (keys and prefixes, in order) by following `next_start_after`.
pub async fn list_all(
    s: &Store,
    b: &BucketRecord,
    prefix: &str,
    delimiter: Option<&str>,
    max: usize,
) -> (Vec<String>, Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut prefixes = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let p = s
            .list_objects(b, &query(prefix, delimiter, after.as_deref(), max))
            .await
            .unwrap();
        pages += 1;
        assert!(p.objects.len() + p.common_prefixes.len() <= max);
        keys.extend(p.objects.iter().map(|o| o.key.clone()));
        prefixes.extend(p.common_prefixes.iter().cloned());
        if !p.is_truncated {
            break;
        }
        let next = p
            .next_start_after
            .clone()
            .expect("truncated page names its continuation");
        assert!(
            after.as_deref() < Some(next.as_str()),
            "listing must advance"
        );
        after = Some(next);
        assert!(pages < 100_000, "listing does not end");
    }
    (keys, prefixes, pages)
}

pub fn heartbeat(node: &str, at: UnixMillis) -> Heartbeat {
    Heartbeat {
        node_id: node.to_string(),
        address: format!("http://127.0.0.1:7{}", node.len()),
        zone: "z1".into(),
        capacity_bytes: 1 << 40,
        used_bytes: 1 << 30,
        chunk_count: 7,
        corrupt_chunks: 0,
        at,
    }
}
