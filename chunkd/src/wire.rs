//! The chunkd wire protocol: the JSON documents exchanged between chunkd and the gateway.
//!
//! Defined once, here, and used by the server (`server.rs`), the client the gateway uses
//! (`client.rs`) and the heartbeat sender (`heartbeat.rs`).
//!
//! HTTP API (every request but `GET /health` carries `Authorization: Bearer <cluster secret>`):
//!
//! | request | answer |
//! | --- | --- |
//! | `PUT /chunks/{id}` | 201 stored, 200 already there (mtime refreshed), 400 `BadDigest`, 413, 507 |
//! | `GET /chunks/{id}` | 200 with the bytes and Content-Length, 404 |
//! | `HEAD /chunks/{id}` | 200 with Content-Length, 404 |
//! | `HEAD /chunks/{id}?touch=1` | like `HEAD`; when present also refreshes the mtime (GC grace) |
//! | `DELETE /chunks/{id}?grace=S` | 204 deleted or absent, 409 written less than S seconds ago (no `grace`: 0) |
//! | `GET /chunks?after={id}&limit={n}` | 200 [`ChunkPage`] (limit 1 to 10000, default 1000) |
//! | `GET /health` | 200 [`Health`] (no secret needed) |
//!
//! Errors carry an [`ErrorBody`].

use serde::{Deserialize, Serialize};

/// Whether `s` is made only of lowercase hex digits (`0-9a-f`).
pub fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `headers` carry `Authorization: Bearer <secret>`. The comparison takes the same time
/// whatever the position of the first differing byte, so a secret cannot be guessed byte by byte
/// from response times. An empty secret matches nothing.
pub fn bearer_matches(headers: &http::HeaderMap, secret: &str) -> bool {
    let Some(given) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    let expected = secret.as_bytes();
    !expected.is_empty()
        && given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Path prefix of chunk requests.
pub const CHUNKS_PATH: &str = "/chunks";
/// Path of the gateway endpoint heartbeats are posted to (on the gateway's admin port).
pub const HEARTBEAT_PATH: &str = "/cluster/heartbeat";

/// Whether `s` is a valid chunk id: exactly 64 lowercase hex characters. Anything else
/// (upper case, `..`, `/`, percent-encoding, other lengths) is rejected before any file is
/// touched, which is what keeps every request inside the data directory.
pub fn is_valid_chunk_id(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

/// `GET /health`: the node's state. Lists no chunk ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub node_id: String,
    pub zone: String,
    pub version: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub chunk_count: u64,
    /// Chunks the scrubber found corrupt and moved to quarantine, since the data directory
    /// was created.
    pub corrupt_chunks: u64,
    pub uptime_s: u64,
}

/// What chunkd POSTs to `{gateway}/cluster/heartbeat`: its health plus the address the gateway
/// should use to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    #[serde(flatten)]
    pub health: Health,
    /// Base URL, e.g. `http://127.0.0.1:7070`.
    pub address: String,
}

/// One entry of `GET /chunks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInfo {
    pub id: String,
    pub size: u64,
    /// Modification time, seconds since the Unix epoch (refreshed by a repeated PUT).
    pub mtime: u64,
}

/// `GET /chunks?after=&limit=`: chunks in id order, strictly after `after`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPage {
    pub chunks: Vec<ChunkInfo>,
    /// Set when more chunks follow: pass it as `after` for the next page.
    pub next_after: Option<String>,
}

/// Body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable: `BadDigest`, `InvalidChunkId`, `Unauthorized`, `NotFound`,
    /// `TooLarge`, `InsufficientStorage`, `TooYoung`, `Internal`, ...
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{header, HeaderMap};

    #[test]
    fn bearer_must_match_exactly() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, "s3cret"));
        headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(bearer_matches(&headers, "s3cret"));
        assert!(!bearer_matches(&headers, ""));
        headers.insert(header::AUTHORIZATION, "Bearer s3cres".parse().unwrap());
        assert!(!bearer_matches(&headers, "s3cret"));
        headers.insert(header::AUTHORIZATION, "Bearer s3cret2".parse().unwrap());
        assert!(!bearer_matches(&headers, "s3cret"));
        headers.insert(header::AUTHORIZATION, "s3cret".parse().unwrap());
        assert!(!bearer_matches(&headers, "s3cret"));
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(!bearer_matches(&headers, ""));
    }

    #[test]
    fn chunk_ids_are_64_lowercase_hex_characters() {
        assert!(is_valid_chunk_id(&"a".repeat(64)));
        assert!(!is_valid_chunk_id(&"A".repeat(64)));
        assert!(!is_valid_chunk_id(&"a".repeat(63)));
        assert!(!is_valid_chunk_id(&format!("{}..", "a".repeat(62))));
    }
}
