//! How the embedded backend lays records out in redb: table definitions, key encodings and the
//! versioned value format.
//!
//! Every table maps bytes to bytes. Keys are built so that the orders the store needs are plain
//! byte ranges: an object key is `bucket id, 0x00, key bytes`, so a bucket's keys sort in UTF-8
//! byte order and a prefix listing is one range scan (bucket ids never contain 0x00). Every value
//! starts with a one-byte format version; version 1 is serde_json of the record (or, for the hot
//! manifest rows and counters, a fixed binary layout). A value whose version this release does not
//! know is reported as [`MetaError::Corrupt`], never guessed at, so a later release may change the
//! format and an older binary refuses the file instead of misreading it.

use crate::{ChunkId, ManifestEntry, MetaError, Result};
use redb::TableDefinition;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A table of the embedded store: byte keys to versioned byte values.
pub(crate) type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// name -> BucketRecord
pub(crate) const BUCKETS: Def = TableDefinition::new("buckets");
/// bucket id, 0x00, key -> ObjectRecord (the current version)
pub(crate) const OBJECTS: Def = TableDefinition::new("objects");
/// version id, 0x00, segment number (u32 BE) -> up to [`MANIFEST_SEGMENT`] entries
pub(crate) const MANIFESTS: Def = TableDefinition::new("manifests");
/// chunk id (32 bytes) -> ChunkRecord (replicas, ref_count, unreferenced_since)
pub(crate) const CHUNKS: Def = TableDefinition::new("chunks");
/// chunk id -> empty; exactly the chunks whose ref_count is 0 (index for garbage collection)
pub(crate) const UNREFERENCED: Def = TableDefinition::new("unreferenced_chunks");
/// node id, 0x00, chunk id -> empty; one row per replica (index for draining)
pub(crate) const NODE_CHUNKS: Def = TableDefinition::new("node_chunks");
/// bucket id, 0x00, key, 0x00, upload id -> UploadRecord
pub(crate) const UPLOADS: Def = TableDefinition::new("uploads");
/// upload id, 0x00, part number (u32 BE) -> PartRecord
pub(crate) const PARTS: Def = TableDefinition::new("parts");
/// node id -> NodeRecord
pub(crate) const NODES: Def = TableDefinition::new("nodes");
/// node id, 0x00, time (u64 BE, milliseconds), sequence (u64 BE) -> NodeEvent
pub(crate) const NODE_EVENTS: Def = TableDefinition::new("node_events");
/// access key id -> AccessKeyRecord
pub(crate) const ACCESS_KEYS: Def = TableDefinition::new("access_keys");
/// lease name -> Lease
pub(crate) const LEASES: Def = TableDefinition::new("leases");
/// setting name -> String
pub(crate) const SETTINGS: Def = TableDefinition::new("settings");
/// counter name -> u64 (object and chunk totals for `stats`, kept in step with every write)
pub(crate) const COUNTERS: Def = TableDefinition::new("counters");

/// Every table, created when the file is opened so read transactions never miss one.
pub(crate) const ALL_TABLES: [Def; 14] = [
    BUCKETS,
    OBJECTS,
    MANIFESTS,
    CHUNKS,
    UNREFERENCED,
    NODE_CHUNKS,
    UPLOADS,
    PARTS,
    NODES,
    NODE_EVENTS,
    ACCESS_KEYS,
    LEASES,
    SETTINGS,
    COUNTERS,
];

/// The format version written by this release.
pub(crate) const FORMAT_V1: u8 = 1;

/// Manifest entries per manifest row: large objects (a 5 TiB object has millions of chunks) are
/// stored as several bounded rows instead of one huge value.
pub(crate) const MANIFEST_SEGMENT: usize = 4096;

const MANIFEST_ENTRY_LEN: usize = 32 + 8;

pub(crate) fn backend(e: impl std::fmt::Display) -> MetaError {
    MetaError::Backend(e.to_string())
}

/// Serializes a record behind the format version byte.
pub(crate) fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    let mut out = vec![FORMAT_V1];
    serde_json::to_writer(&mut out, record).map_err(backend)?;
    Ok(out)
}

/// Reads a record written by [`encode`]; unknown versions and damaged bytes are `Corrupt`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => serde_json::from_slice(body)
            .map_err(|e| MetaError::Corrupt(format!("{what} record: {e}"))),
        Some((v, _)) => Err(MetaError::Corrupt(format!(
            "{what} record has format version {v}, this release reads version {FORMAT_V1} \
             (was the file written by a newer SDFBS?)"
        ))),
        None => Err(MetaError::Corrupt(format!("{what} record is empty"))),
    }
}

pub(crate) fn encode_u64(v: u64) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    out.extend_from_slice(&v.to_be_bytes());
    out
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Result<u64> {
    match bytes {
        [FORMAT_V1, rest @ ..] if rest.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(rest);
            Ok(u64::from_be_bytes(b))
        }
        _ => Err(MetaError::Corrupt("counter record is unreadable".into())),
    }
}

/// One manifest row: version byte, then (chunk id, size BE) per entry.
pub(crate) fn encode_manifest_segment(entries: &[ManifestEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * MANIFEST_ENTRY_LEN);
    out.push(FORMAT_V1);
    for e in entries {
        out.extend_from_slice(&e.chunk.0);
        out.extend_from_slice(&e.size.to_be_bytes());
    }
    out
}

pub(crate) fn decode_manifest_segment(bytes: &[u8], out: &mut Vec<ManifestEntry>) -> Result<()> {
    let body = match bytes.split_first() {
        Some((&FORMAT_V1, body)) if body.len() % MANIFEST_ENTRY_LEN == 0 => body,
        _ => return Err(MetaError::Corrupt("manifest record is unreadable".into())),
    };
    for e in body.chunks_exact(MANIFEST_ENTRY_LEN) {
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[..32]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&e[32..]);
        out.push(ManifestEntry {
            chunk: ChunkId(id),
            size: u64::from_be_bytes(size),
        });
    }
    Ok(())
}

/// `a, 0x00, b`.
pub(crate) fn join(a: &str, b: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + 1 + b.len());
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b);
    k
}

/// The prefix under which all rows of a bucket (objects or uploads) live.
pub(crate) fn bucket_prefix(bucket_id: &str) -> Vec<u8> {
    join(bucket_id, b"")
}

pub(crate) fn object_key(bucket_id: &str, key: &str) -> Vec<u8> {
    join(bucket_id, key.as_bytes())
}

pub(crate) fn upload_key(bucket_id: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = join(bucket_id, key.as_bytes());
    k.push(0);
    k.extend_from_slice(upload_id.as_bytes());
    k
}

pub(crate) fn part_key(upload_id: &str, number: u32) -> Vec<u8> {
    join(upload_id, &number.to_be_bytes())
}

pub(crate) fn manifest_key(version_id: &str, segment: u32) -> Vec<u8> {
    join(version_id, &segment.to_be_bytes())
}

pub(crate) fn node_chunk_key(node: &str, chunk: &ChunkId) -> Vec<u8> {
    join(node, &chunk.0)
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None` when
/// there is none (the prefix is all 0xFF). Used to seek past a folded common prefix and as the
/// exclusive end of a prefix scan.
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut v = prefix.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xFF {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_format_version_is_corrupt() {
        let mut bytes = encode(&"hello".to_string()).unwrap();
        assert_eq!(decode::<String>(&bytes, "test").unwrap(), "hello");
        bytes[0] = 2;
        assert!(matches!(
            decode::<String>(&bytes, "test"),
            Err(MetaError::Corrupt(_))
        ));
        assert!(matches!(
            decode::<String>(&[], "test"),
            Err(MetaError::Corrupt(_))
        ));
    }

    #[test]
    fn manifest_segment_round_trips() {
        let entries = vec![
            ManifestEntry {
                chunk: ChunkId([7; 32]),
                size: 1 << 20,
            },
            ManifestEntry {
                chunk: ChunkId([9; 32]),
                size: 3,
            },
        ];
        let mut out = Vec::new();
        decode_manifest_segment(&encode_manifest_segment(&entries), &mut out).unwrap();
        assert_eq!(out, entries);
        assert!(decode_manifest_segment(&[2], &mut out).is_err());
    }

    #[test]
    fn successor_skips_everything_under_a_prefix() {
        assert_eq!(prefix_successor(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_successor(&[b'a', 0xFF]), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
    }
}
