//! The chunkd wire protocol, as Rust types: every path, query parameter, JSON document and
//! error code exchanged between chunkd and the gateway.
//!
//! Defined once, here, and used by the server (`server.rs`), the client the gateway uses
//! (`client.rs`) and the heartbeat sender (`heartbeat.rs`); no string of the protocol is
//! spelled anywhere else. [`ChunkId`] is also the chunk id of the whole workspace (the metadata
//! crate re-exports it). This module needs neither an HTTP server nor a runtime: it is all the
//! crate builds with `default-features = false` (without the `node` feature).
//!
//! # HTTP API
//!
//! Checks, in this order, for every request:
//! 1. `/health` needs nothing (another method than GET is 405 at once). Any other path,
//!    existing or not, needs `Authorization: Bearer <cluster secret>` ([`bearer`],
//!    [`bearer_matches`]); without it, or with a wrong secret: 401 `Unauthorized`.
//! 2. The path ([`Endpoint`]): anything but `/health`, `/chunks`, `/chunks/` and
//!    `/chunks/{id}` is 404 `NotFound`.
//! 3. `{id}` ([`ChunkId::from_hex`]): anything but 64 lowercase hex characters (upper case,
//!    `..`, `/`, percent-encoding, another length) is 400 `InvalidChunkId`, whatever the method,
//!    before any file is touched.
//! 4. The method: another one is 405 `MethodNotAllowed` with an `Allow` header
//!    ([`Endpoint::allowed_methods`]).
//! 5. The query ([`HeadQuery`], [`DeleteQuery`], [`ListQuery`]): values are not
//!    percent-decoded, the first occurrence of a parameter counts, unknown ones are ignored.
//!
//! | request | query | success | errors |
//! | --- | --- | --- | --- |
//! | `PUT /chunks/{id}` | | 201 stored (after fsync), 200 already there (mtime refreshed) | 400 `BadDigest`, 400 `IncompleteBody`, 413 `TooLarge`, 507 `InsufficientStorage` (disk full) or `ReadOnly` (read-only disk), 503 `ShuttingDown` |
//! | `GET /chunks/{id}` | | 200 the bytes (Content-Length) | 404 `NotFound` |
//! | `HEAD /chunks/{id}` | `touch` | 200 (Content-Length) | 404 |
//! | `DELETE /chunks/{id}` | `grace=S` | 204 deleted or absent | 409 `TooYoung`, 400 `InvalidArgument` |
//! | `GET /chunks` or `/chunks/` | `after={id}`, `limit=N` | 200 [`ChunkPage`] | 400 `InvalidChunkId`, 400 `InvalidArgument` |
//! | `GET /health` | | 200 [`Health`] (no secret, lists no chunk id) | |
//!
//! * `PUT`: `BadDigest` when the body does not hash to `id`, `IncompleteBody` when reading it
//!   failed, `TooLarge` when its Content-Length or its length is over `--max-chunk-size`;
//!   after any error nothing is stored.
//! * `GET` answers `Content-Type: application/octet-stream`.
//! * `HEAD` with `touch` (any value but `0` or `false`, even none) also refreshes and fsyncs a
//!   present chunk's mtime, which restarts its GC grace period. Its 404 has no body.
//! * `DELETE`: `grace` is whole seconds, 0 when absent; `TooYoung` when the chunk was written
//!   or refreshed less than `grace` seconds ago (it is kept); `InvalidArgument` when `grace` is
//!   not a whole number.
//! * `GET /chunks`: ids strictly after `after` (empty means none; not an id: `InvalidChunkId`),
//!   in id order; `limit` defaults to 1000 and is clamped to 1..=10000 (not a whole number:
//!   `InvalidArgument`); `after` is checked first.
//! * Any request may get 500 `Internal` when the disk fails.
//!
//! The JSON documents ([`Health`], [`ChunkPage`], [`ErrorBody`]) come with
//! `Content-Type: application/json`. Every error answer carries an [`ErrorBody`], except the
//! 404 of a HEAD (and a HEAD answer never has a body). [`ErrorCode::status`] is the one table
//! of which status goes with which code.
//!
//! Heartbeats go the other way: chunkd POSTs a [`Heartbeat`] (JSON) to `{gateway}` +
//! [`HEARTBEAT_PATH`] on the gateway's admin port, with the same secret; any 2xx answer counts
//! as accepted.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Path of the node's health document.
pub const HEALTH_PATH: &str = "/health";
/// Path of the chunk listing, and prefix of every chunk's path ([`chunk_path`]).
pub const CHUNKS_PATH: &str = "/chunks";
/// Path of the gateway endpoint heartbeats are posted to (on the gateway's admin port).
pub const HEARTBEAT_PATH: &str = "/cluster/heartbeat";

/// `Content-Type` of the JSON documents (heartbeats, health, listings, errors).
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// `Content-Type` of a chunk's bytes.
pub const CHUNK_CONTENT_TYPE: &str = "application/octet-stream";

/// `HEAD /chunks/{id}?touch=1`: also refresh the chunk's modification time.
pub const TOUCH_PARAM: &str = "touch";
/// `DELETE /chunks/{id}?grace=S`: keep the chunk if written or refreshed less than S s ago.
pub const GRACE_PARAM: &str = "grace";
/// `GET /chunks?after={id}`: list ids strictly after this one.
pub const AFTER_PARAM: &str = "after";
/// `GET /chunks?limit=N`: at most this many entries.
pub const LIMIT_PARAM: &str = "limit";

/// Entries of a listing when `limit` is absent.
pub const DEFAULT_LIST_LIMIT: usize = 1000;
/// Largest page a listing returns; a larger `limit` is lowered to it (and 0 raised to 1).
pub const MAX_LIST_LIMIT: usize = 10_000;

const BEARER_PREFIX: &str = "Bearer ";

/// The SHA-256 of a chunk's bytes, which names the chunk everywhere: in chunkd's URLs and file
/// names, in the protocol's JSON documents, and in the metadata records.
///
/// In text it is always 64 lowercase hex characters ([`to_hex`](Self::to_hex), `Display`);
/// [`from_hex`](Self::from_hex) accepts nothing else. Ordering is by bytes, which is the same
/// as the order of the hex strings.
///
/// Its serde form is the newtype of 32 bytes (in JSON, an array of 32 numbers): the metadata
/// store persists records with it, so it must never change. The protocol's JSON documents
/// carry the hex string instead (see [`ChunkInfo`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Parses 64 lowercase hex characters. Anything else is `None`.
    pub fn from_hex(s: &str) -> Option<ChunkId> {
        if !is_valid_chunk_id(s) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ChunkId(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", self.to_hex())
    }
}

/// Whether `s` is a valid chunk id: exactly 64 lowercase hex characters. Anything else
/// (upper case, `..`, `/`, percent-encoding, other lengths) is rejected before any file is
/// touched, which is what keeps every request inside the data directory.
pub fn is_valid_chunk_id(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

/// Whether `s` is made only of lowercase hex digits (`0-9a-f`).
pub fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The path of one chunk: `/chunks/{id}`.
pub fn chunk_path(id: &ChunkId) -> String {
    format!("{CHUNKS_PATH}/{id}")
}

/// `path?query`, or `path` alone when `query` is empty.
pub fn with_query(path: String, query: &str) -> String {
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

/// What a request path names, as the server routes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `/health`.
    Health,
    /// `/chunks` or `/chunks/`: the listing.
    ChunkList,
    /// `/chunks/{id}`, with `{id}` as it came (not validated yet: see [`ChunkId::from_hex`]).
    Chunk(&'a str),
    /// Anything else.
    Unknown,
}

impl<'a> Endpoint<'a> {
    pub fn parse(path: &'a str) -> Endpoint<'a> {
        if path == HEALTH_PATH {
            return Endpoint::Health;
        }
        match path.strip_prefix(CHUNKS_PATH) {
            Some("" | "/") => Endpoint::ChunkList,
            Some(rest) => match rest.strip_prefix('/') {
                Some(raw_id) => Endpoint::Chunk(raw_id),
                None => Endpoint::Unknown,
            },
            None => Endpoint::Unknown,
        }
    }

    /// The `Allow` header of a 405 answer on this endpoint.
    pub fn allowed_methods(&self) -> &'static str {
        match self {
            Endpoint::Health | Endpoint::ChunkList => "GET",
            Endpoint::Chunk(_) => "GET, HEAD, PUT, DELETE",
            Endpoint::Unknown => "",
        }
    }
}

/// The value of the `Authorization` header that carries `secret`.
pub fn bearer(secret: &str) -> String {
    format!("{BEARER_PREFIX}{secret}")
}

/// Whether `headers` carry `Authorization: Bearer <secret>`. The comparison takes the same time
/// whatever the position of the first differing byte, so a secret cannot be guessed byte by byte
/// from response times. An empty secret matches nothing.
pub fn bearer_matches(headers: &http::HeaderMap, secret: &str) -> bool {
    let Some(given) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(BEARER_PREFIX.as_bytes()))
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

/// A query string the server refuses: the error code and message of its 400 answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidQuery {
    pub code: ErrorCode,
    pub message: &'static str,
}

/// Query of `HEAD /chunks/{id}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadQuery {
    /// Also refresh the chunk's modification time, restarting its GC grace period.
    pub touch: bool,
}

impl HeadQuery {
    /// Never fails: `touch` with any value but `0` or `false` (even none) asks for a touch.
    pub fn parse(query: Option<&str>) -> HeadQuery {
        HeadQuery {
            touch: query_param(query, TOUCH_PARAM).is_some_and(|v| v != "0" && v != "false"),
        }
    }

    /// `touch=1`, or nothing.
    pub fn to_query(&self) -> String {
        if self.touch {
            format!("{TOUCH_PARAM}=1")
        } else {
            String::new()
        }
    }
}

/// Query of `DELETE /chunks/{id}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteQuery {
    /// Keep the chunk if it was written or refreshed less than this many seconds ago.
    pub grace_secs: u64,
}

impl DeleteQuery {
    /// A grace period in whole seconds, rounded up so the node never waits less than asked.
    pub fn rounding_up(grace: Duration) -> DeleteQuery {
        DeleteQuery {
            grace_secs: grace.as_secs() + u64::from(grace.subsec_nanos() > 0),
        }
    }

    /// No `grace` means 0; anything but a whole number of seconds is refused.
    pub fn parse(query: Option<&str>) -> Result<DeleteQuery, InvalidQuery> {
        let grace_secs = match query_param(query, GRACE_PARAM).map(str::parse::<u64>) {
            None => 0,
            Some(Ok(secs)) => secs,
            Some(Err(_)) => {
                return Err(InvalidQuery {
                    code: ErrorCode::InvalidArgument,
                    message: "grace must be a whole number of seconds",
                })
            }
        };
        Ok(DeleteQuery { grace_secs })
    }

    /// `grace=S` (always sent, even 0).
    pub fn to_query(&self) -> String {
        format!("{GRACE_PARAM}={}", self.grace_secs)
    }
}

/// Query of `GET /chunks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Only ids strictly after this one.
    pub after: Option<ChunkId>,
    /// At most this many entries. The server clamps it to `1..=MAX_LIST_LIMIT`.
    pub limit: usize,
}

impl ListQuery {
    /// An empty `after` means none; a missing `limit` is [`DEFAULT_LIST_LIMIT`]. `after` is
    /// checked first: a bad one is 400 `InvalidChunkId`, a bad `limit` 400 `InvalidArgument`.
    pub fn parse(query: Option<&str>) -> Result<ListQuery, InvalidQuery> {
        let after = match query_param(query, AFTER_PARAM).filter(|a| !a.is_empty()) {
            None => None,
            Some(a) => Some(ChunkId::from_hex(a).ok_or(InvalidQuery {
                code: ErrorCode::InvalidChunkId,
                message: "after must be a chunk id (64 lowercase hex characters)",
            })?),
        };
        let limit = match query_param(query, LIMIT_PARAM).map(str::parse::<usize>) {
            None => DEFAULT_LIST_LIMIT,
            Some(Ok(n)) => n.clamp(1, MAX_LIST_LIMIT),
            Some(Err(_)) => {
                return Err(InvalidQuery {
                    code: ErrorCode::InvalidArgument,
                    message: "limit must be a positive whole number",
                })
            }
        };
        Ok(ListQuery { after, limit })
    }

    /// `limit=N`, then `&after={id}` when set.
    pub fn to_query(&self) -> String {
        let mut query = format!("{LIMIT_PARAM}={}", self.limit);
        if let Some(after) = &self.after {
            query.push_str(&format!("&{AFTER_PARAM}={after}"));
        }
        query
    }
}

/// The value of `name` in a query string (no percent-decoding: every value this API accepts
/// is plain ASCII, and an encoded one is simply invalid).
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
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
    /// As 64 lowercase hex characters in the JSON.
    #[serde(with = "hex_id")]
    pub id: ChunkId,
    pub size: u64,
    /// Modification time, seconds since the Unix epoch (refreshed by a repeated PUT).
    pub mtime: u64,
}

/// `GET /chunks?after=&limit=`: chunks in id order, strictly after `after`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPage {
    pub chunks: Vec<ChunkInfo>,
    /// Set when more chunks follow: pass it as `after` for the next page. As 64 lowercase hex
    /// characters (or `null`) in the JSON; a missing field is `None`.
    #[serde(default, with = "hex_id::option")]
    pub next_after: Option<ChunkId>,
}

/// Body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// For a person: what went wrong and, where it helps, what to do about it.
    pub message: String,
}

/// The machine-readable `code` of an [`ErrorBody`]. In the JSON, the variant's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The body of a PUT does not hash to the chunk id; nothing was stored.
    BadDigest,
    /// A chunk id (in the path, or `after`) is not 64 lowercase hex characters.
    InvalidChunkId,
    /// Missing or wrong cluster secret.
    Unauthorized,
    /// No such chunk, or no such endpoint.
    NotFound,
    /// A PUT body over the node's `--max-chunk-size`.
    TooLarge,
    /// The node has no room left; nothing was stored.
    InsufficientStorage,
    /// The node's disk is read-only (remounted after errors, or by an operator); nothing was
    /// stored. Answered with 507 like a full disk: the gateway writes to the next node.
    ReadOnly,
    /// A DELETE of a chunk written or refreshed within the grace period; it was kept.
    TooYoung,
    /// A query parameter with a malformed value.
    InvalidArgument,
    /// Reading the PUT body failed before its end.
    IncompleteBody,
    /// The node is stopping and takes no more PUTs.
    ShuttingDown,
    MethodNotAllowed,
    Internal,
    /// A code this version does not know (sent by an older or newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The status code of the answers carrying this code: the one place the pairs are defined.
    pub fn status(self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            ErrorCode::BadDigest
            | ErrorCode::InvalidChunkId
            | ErrorCode::InvalidArgument
            | ErrorCode::IncompleteBody => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooYoung => StatusCode::CONFLICT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InsufficientStorage | ErrorCode::ReadOnly => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            ErrorCode::Internal | ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as it appears in the JSON (the same string serde writes).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadDigest => "BadDigest",
            ErrorCode::InvalidChunkId => "InvalidChunkId",
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::TooLarge => "TooLarge",
            ErrorCode::InsufficientStorage => "InsufficientStorage",
            ErrorCode::ReadOnly => "ReadOnly",
            ErrorCode::TooYoung => "TooYoung",
            ErrorCode::InvalidArgument => "InvalidArgument",
            ErrorCode::IncompleteBody => "IncompleteBody",
            ErrorCode::ShuttingDown => "ShuttingDown",
            ErrorCode::MethodNotAllowed => "MethodNotAllowed",
            ErrorCode::Internal => "Internal",
            ErrorCode::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serde of a [`ChunkId`] as its hex string, the form ids take in the protocol's documents
/// (`#[serde(with = "hex_id")]`; `hex_id::option` for an `Option<ChunkId>`).
mod hex_id {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::ChunkId;

    pub fn serialize<S: Serializer>(id: &ChunkId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&id.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ChunkId, D::Error> {
        let hex = String::deserialize(deserializer)?;
        parse(&hex)
    }

    fn parse<E: serde::de::Error>(hex: &str) -> Result<ChunkId, E> {
        ChunkId::from_hex(hex)
            .ok_or_else(|| E::custom(format!("{hex:?} is not a chunk id (64 lowercase hex)")))
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            id: &Option<ChunkId>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match id {
                Some(id) => super::serialize(id, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<ChunkId>, D::Error> {
            match Option::<String>::deserialize(deserializer)? {
                Some(hex) => parse(&hex).map(Some),
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{header, HeaderMap};

    #[test]
    fn bearer_must_match_exactly() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, "s3cret"));
        headers.insert(header::AUTHORIZATION, bearer("s3cret").parse().unwrap());
        assert!(bearer_matches(&headers, "s3cret"));
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

        let hex = format!("{}{}", "0f".repeat(16), "a9".repeat(16));
        let id = ChunkId::from_hex(&hex).unwrap();
        assert_eq!(id.to_hex(), hex);
        assert_eq!(id.to_string(), hex);
        assert_eq!(format!("{id:?}"), format!("ChunkId({hex})"));
        assert_eq!(ChunkId::from_hex(&hex.to_uppercase()), None);
        assert_eq!(ChunkId::from_hex(&hex[..62]), None);
        assert_eq!(ChunkId::from_hex(&format!("{hex}00")), None);
        assert_eq!(ChunkId::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn chunk_id_order_is_the_order_of_its_hex() {
        let ids = ["00ff", "0100", "7f00", "8000", "ff00"]
            .map(|p| ChunkId::from_hex(&format!("{p}{}", "0".repeat(60))).unwrap());
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_hex() < pair[1].to_hex());
        }
    }

    /// Metadata records are stored with this form: it must never change.
    #[test]
    fn chunk_id_serde_form_is_the_32_bytes() {
        let mut bytes = [0u8; 32];
        bytes[0] = 1;
        bytes[31] = 255;
        let id = ChunkId(bytes);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(
            json,
            "[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,255]"
        );
        assert_eq!(serde_json::from_str::<ChunkId>(&json).unwrap(), id);
    }

    /// Every code, with the string it had on the wire before the codes were an enum.
    const CODES: [(ErrorCode, &str); 13] = [
        (ErrorCode::BadDigest, "BadDigest"),
        (ErrorCode::InvalidChunkId, "InvalidChunkId"),
        (ErrorCode::Unauthorized, "Unauthorized"),
        (ErrorCode::NotFound, "NotFound"),
        (ErrorCode::TooLarge, "TooLarge"),
        (ErrorCode::InsufficientStorage, "InsufficientStorage"),
        (ErrorCode::ReadOnly, "ReadOnly"),
        (ErrorCode::TooYoung, "TooYoung"),
        (ErrorCode::InvalidArgument, "InvalidArgument"),
        (ErrorCode::IncompleteBody, "IncompleteBody"),
        (ErrorCode::ShuttingDown, "ShuttingDown"),
        (ErrorCode::MethodNotAllowed, "MethodNotAllowed"),
        (ErrorCode::Internal, "Internal"),
    ];

    #[test]
    fn error_codes_keep_their_wire_strings() {
        for (code, wire) in CODES {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{wire}\""));
            assert_eq!(code.as_str(), wire);
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let body = ErrorBody {
            code: ErrorCode::TooYoung,
            message: "kept".into(),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"code":"TooYoung","message":"kept"}"#
        );
    }

    #[test]
    fn unknown_error_codes_still_parse() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"code":"SlowDown","message":"later"}"#).unwrap();
        assert_eq!(body.code, ErrorCode::Unknown);
        assert_eq!(body.message, "later");
        assert_eq!(ErrorCode::Unknown.as_str(), "Unknown");
    }

    #[test]
    fn status_and_code_pairs() {
        use http::StatusCode;
        let expected = [
            (ErrorCode::BadDigest, StatusCode::BAD_REQUEST),
            (ErrorCode::InvalidChunkId, StatusCode::BAD_REQUEST),
            (ErrorCode::Unauthorized, StatusCode::UNAUTHORIZED),
            (ErrorCode::NotFound, StatusCode::NOT_FOUND),
            (ErrorCode::TooLarge, StatusCode::PAYLOAD_TOO_LARGE),
            (
                ErrorCode::InsufficientStorage,
                StatusCode::INSUFFICIENT_STORAGE,
            ),
            (ErrorCode::ReadOnly, StatusCode::INSUFFICIENT_STORAGE),
            (ErrorCode::TooYoung, StatusCode::CONFLICT),
            (ErrorCode::InvalidArgument, StatusCode::BAD_REQUEST),
            (ErrorCode::IncompleteBody, StatusCode::BAD_REQUEST),
            (ErrorCode::ShuttingDown, StatusCode::SERVICE_UNAVAILABLE),
            (ErrorCode::MethodNotAllowed, StatusCode::METHOD_NOT_ALLOWED),
            (ErrorCode::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (code, status) in expected {
            assert_eq!(code.status(), status, "{code}");
        }
    }

    #[test]
    fn query_params_are_found_by_exact_name() {
        assert_eq!(query_param(Some("grace=30"), "grace"), Some("30"));
        assert_eq!(query_param(Some("a=1&touch=1"), "touch"), Some("1"));
        assert_eq!(query_param(Some("touch"), "touch"), Some(""));
        assert_eq!(query_param(Some("xgrace=3"), "grace"), None);
        assert_eq!(query_param(None, "grace"), None);
    }

    #[test]
    fn head_query_round_trip() {
        for touch in [false, true] {
            let q = HeadQuery { touch };
            assert_eq!(HeadQuery::parse(Some(&q.to_query())), q);
        }
        assert_eq!(HeadQuery { touch: true }.to_query(), "touch=1");
        assert_eq!(HeadQuery { touch: false }.to_query(), "");
        assert!(!HeadQuery::parse(None).touch);
        assert!(HeadQuery::parse(Some("touch")).touch);
        assert!(HeadQuery::parse(Some("touch=yes")).touch);
        assert!(!HeadQuery::parse(Some("touch=0")).touch);
        assert!(!HeadQuery::parse(Some("touch=false")).touch);
    }

    #[test]
    fn delete_query_round_trip_and_bad_values() {
        for grace_secs in [0, 1, 3600, u64::MAX] {
            let q = DeleteQuery { grace_secs };
            assert_eq!(DeleteQuery::parse(Some(&q.to_query())), Ok(q));
        }
        assert_eq!(DeleteQuery { grace_secs: 30 }.to_query(), "grace=30");
        assert_eq!(DeleteQuery::parse(None), Ok(DeleteQuery { grace_secs: 0 }));
        assert_eq!(DeleteQuery::parse(Some("x=1")).unwrap().grace_secs, 0);
        for bad in ["grace=abc", "grace=", "grace=-1", "grace=1.5", "grace=%31"] {
            let err = DeleteQuery::parse(Some(bad)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{bad}");
            assert_eq!(err.code.status(), http::StatusCode::BAD_REQUEST);
        }
        assert_eq!(
            DeleteQuery::rounding_up(Duration::from_millis(1500)).grace_secs,
            2
        );
        assert_eq!(
            DeleteQuery::rounding_up(Duration::from_secs(60)).grace_secs,
            60
        );
        assert_eq!(DeleteQuery::rounding_up(Duration::ZERO).grace_secs, 0);
    }

    #[test]
    fn list_query_round_trip_and_bad_values() {
        let id = ChunkId::from_hex(&"ab".repeat(32)).unwrap();
        for q in [
            ListQuery {
                after: None,
                limit: 1,
            },
            ListQuery {
                after: Some(id),
                limit: MAX_LIST_LIMIT,
            },
        ] {
            assert_eq!(ListQuery::parse(Some(&q.to_query())), Ok(q));
        }
        assert_eq!(
            ListQuery {
                after: Some(id),
                limit: 4
            }
            .to_query(),
            format!("limit=4&after={}", "ab".repeat(32))
        );
        let default = ListQuery {
            after: None,
            limit: DEFAULT_LIST_LIMIT,
        };
        assert_eq!(ListQuery::parse(None), Ok(default));
        assert_eq!(ListQuery::parse(Some("after=")), Ok(default));
        // The limit is clamped, not refused.
        assert_eq!(ListQuery::parse(Some("limit=0")).unwrap().limit, 1);
        assert_eq!(
            ListQuery::parse(Some("limit=99999999")).unwrap().limit,
            MAX_LIST_LIMIT
        );
        for bad in ["limit=x", "limit=-1", "limit="] {
            let err = ListQuery::parse(Some(bad)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{bad}");
        }
        let upper = format!("after={}", "AB".repeat(32));
        for bad in ["after=../x", "after=abc", upper.as_str()] {
            let err = ListQuery::parse(Some(bad)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidChunkId, "{bad}");
        }
        // `after` is checked first.
        assert_eq!(
            ListQuery::parse(Some("limit=x&after=zz")).unwrap_err().code,
            ErrorCode::InvalidChunkId
        );
    }

    #[test]
    fn endpoints_and_paths() {
        let id = ChunkId::from_hex(&"cd".repeat(32)).unwrap();
        let path = chunk_path(&id);
        assert_eq!(path, format!("/chunks/{}", "cd".repeat(32)));
        assert_eq!(Endpoint::parse(&path), Endpoint::Chunk(&path[8..]));
        assert_eq!(Endpoint::parse("/health"), Endpoint::Health);
        assert_eq!(Endpoint::parse("/chunks"), Endpoint::ChunkList);
        assert_eq!(Endpoint::parse("/chunks/"), Endpoint::ChunkList);
        assert_eq!(Endpoint::parse("/chunks/../x"), Endpoint::Chunk("../x"));
        assert_eq!(Endpoint::parse("/chunksx"), Endpoint::Unknown);
        assert_eq!(Endpoint::parse("/health/"), Endpoint::Unknown);
        assert_eq!(Endpoint::parse("/"), Endpoint::Unknown);
        assert_eq!(
            with_query(chunk_path(&id), "touch=1"),
            format!("{path}?touch=1")
        );
        assert_eq!(with_query(chunk_path(&id), ""), path);
    }

    /// The listing's JSON carries ids as hex strings, as before they were typed.
    #[test]
    fn chunk_page_json_carries_hex_ids() {
        let id = ChunkId::from_hex(&"01".repeat(32)).unwrap();
        let page = ChunkPage {
            chunks: vec![ChunkInfo {
                id,
                size: 5,
                mtime: 7,
            }],
            next_after: Some(id),
        };
        let hex = "01".repeat(32);
        let json = serde_json::to_string(&page).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"chunks":[{{"id":"{hex}","size":5,"mtime":7}}],"next_after":"{hex}"}}"#)
        );
        assert_eq!(serde_json::from_str::<ChunkPage>(&json).unwrap(), page);
        let last = ChunkPage {
            chunks: vec![],
            next_after: None,
        };
        let json = serde_json::to_string(&last).unwrap();
        assert_eq!(json, r#"{"chunks":[],"next_after":null}"#);
        assert_eq!(serde_json::from_str::<ChunkPage>(&json).unwrap(), last);
        assert_eq!(
            serde_json::from_str::<ChunkPage>(r#"{"chunks":[]}"#).unwrap(),
            last
        );
        assert!(serde_json::from_str::<ChunkInfo>(&format!(
            r#"{{"id":"{}","size":1,"mtime":1}}"#,
            "AB".repeat(32)
        ))
        .is_err());
    }
}
