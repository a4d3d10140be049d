//! Listing objects: ListObjects (v1, marker) and ListObjectsV2 (continuation token,
//! start-after, fetch-owner), with prefix, delimiter, max-keys and encoding-type=url.
//!
//! The metadata store folds common prefixes and pages by an exclusive lower bound
//! (`ListQuery::start_after`); a v2 continuation token is that bound, base64-encoded, so it is
//! opaque to clients and safe for any key bytes.
//!
//! With `encoding-type=url`, every key-like value of the answer is URL-encoded: keys, the
//! echoed prefix, delimiter, start-after and marker, common prefixes, and NextMarker. (Not the
//! continuation tokens: they are opaque already.) Clients decode with a form decoder
//! (botocore's `unquote_plus`), so everything but unreserved characters and `/` is
//! percent-encoded, `+` and space included.

use crate::s3::checksum::b64;
use crate::s3::error;
use crate::s3::{load_bucket, timestamp};
use crate::state::Gateway;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use sdfbs_metadata::{ListPage, ListQuery, ObjectRecord};

/// Characters left as they are by encoding-type=url: RFC 3986 unreserved, and `/`.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Encodes a key-like value for an answer with encoding-type=url.
pub fn url_encode(value: &str) -> String {
    utf8_percent_encode(value, KEEP).to_string()
}

/// How the values of one listing answer are written.
#[derive(Clone, Copy)]
pub struct Encoding {
    url: bool,
}

impl Encoding {
    pub fn parse(encoding_type: Option<&EncodingType>) -> S3Result<Encoding> {
        match encoding_type.map(|e| e.as_str()) {
            None => Ok(Encoding { url: false }),
            Some(e) if e.eq_ignore_ascii_case(EncodingType::URL) => Ok(Encoding { url: true }),
            Some(other) => Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("Invalid Encoding Method specified in Request: `{other}` (only `url` is supported)"),
            )),
        }
    }

    pub fn apply(self, value: String) -> String {
        if self.url {
            url_encode(&value)
        } else {
            value
        }
    }

    pub fn opt(self, value: Option<String>) -> Option<String> {
        value.map(|v| self.apply(v))
    }

    pub fn echo(self) -> Option<EncodingType> {
        self.url
            .then(|| EncodingType::from_static(EncodingType::URL))
    }
}

/// S3 answers at most 1000 keys per page.
const MAX_KEYS: i32 = 1000;

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(MAX_KEYS as usize),
        Some(n) if n < 0 => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "max-keys must be a non-negative integer",
        )),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
    }
}

fn query(
    prefix: &Option<String>,
    delimiter: &Option<String>,
    start_after: Option<String>,
    max: usize,
) -> ListQuery {
    ListQuery {
        prefix: prefix.clone().unwrap_or_default(),
        delimiter: delimiter.clone().filter(|d| !d.is_empty()),
        start_after: start_after.filter(|s| !s.is_empty()),
        max_keys: max,
    }
}

fn entry(o: ObjectRecord, enc: Encoding, owner: bool) -> Object {
    Object {
        key: Some(enc.apply(o.key)),
        size: i64::try_from(o.size).ok(),
        e_tag: Some(ETag::Strong(o.etag)),
        last_modified: Some(timestamp(o.last_modified)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        checksum_algorithm: (!o.checksums.is_empty()).then(|| {
            o.checksums
                .keys()
                .map(|a| ChecksumAlgorithm::from(a.clone()))
                .collect()
        }),
        checksum_type: o.checksum_type.map(ChecksumType::from),
        owner: owner.then(|| Owner {
            id: Some(o.owner.clone()),
            display_name: Some(o.owner),
        }),
        ..Default::default()
    }
}

fn prefixes(page: &mut ListPage, enc: Encoding) -> Option<Vec<CommonPrefix>> {
    let list: Vec<CommonPrefix> = std::mem::take(&mut page.common_prefixes)
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(enc.apply(p)),
        })
        .collect();
    (!list.is_empty()).then_some(list)
}

/// The opaque continuation token that resumes a listing after `start_after` (also used by
/// ListBuckets, over bucket names).
pub fn encode_token(start_after: &str) -> String {
    b64(start_after.as_bytes())
}

/// The bound a continuation token of [`encode_token`] stands for; `InvalidArgument` otherwise.
pub fn decode_token(token: &str) -> S3Result<String> {
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "The continuation token provided is incorrect",
            )
        })
}

pub async fn list_v2(
    gw: &Gateway,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    let enc = Encoding::parse(input.encoding_type.as_ref())?;
    let max = max_keys(input.max_keys)?;
    let bucket = load_bucket(gw, &input.bucket).await?;
    // A continuation token supersedes start-after (S3 ignores start-after then).
    let start = match &input.continuation_token {
        Some(token) => Some(decode_token(token)?),
        None => input.start_after.clone(),
    };
    let q = query(&input.prefix, &input.delimiter, start, max);
    let mut page = gw
        .meta
        .list_objects(&bucket, &q)
        .await
        .map_err(error::meta)?;
    let owner = input.fetch_owner.unwrap_or(false);
    let common_prefixes = prefixes(&mut page, enc);
    let key_count = page.objects.len() + common_prefixes.as_ref().map_or(0, Vec::len);
    let contents: Vec<Object> = page
        .objects
        .into_iter()
        .map(|o| entry(o, enc, owner))
        .collect();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(enc.apply(input.prefix.unwrap_or_default())),
        delimiter: enc.opt(input.delimiter),
        start_after: enc.opt(input.start_after),
        encoding_type: enc.echo(),
        max_keys: Some(max as i32),
        key_count: Some(key_count as i32),
        continuation_token: input.continuation_token,
        is_truncated: Some(page.is_truncated),
        next_continuation_token: if page.is_truncated {
            page.next_start_after.as_deref().map(encode_token)
        } else {
            None
        },
        contents: (!contents.is_empty()).then_some(contents),
        common_prefixes,
        ..Default::default()
    }))
}

pub async fn list_v1(
    gw: &Gateway,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    let enc = Encoding::parse(input.encoding_type.as_ref())?;
    let max = max_keys(input.max_keys)?;
    let bucket = load_bucket(gw, &input.bucket).await?;
    let q = query(&input.prefix, &input.delimiter, input.marker.clone(), max);
    let mut page = gw
        .meta
        .list_objects(&bucket, &q)
        .await
        .map_err(error::meta)?;
    let common_prefixes = prefixes(&mut page, enc);
    let contents: Vec<Object> = page
        .objects
        .into_iter()
        .map(|o| entry(o, enc, true))
        .collect();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(enc.apply(input.prefix.unwrap_or_default())),
        delimiter: enc.opt(input.delimiter),
        marker: Some(enc.apply(input.marker.unwrap_or_default())),
        encoding_type: enc.echo(),
        max_keys: Some(max as i32),
        is_truncated: Some(page.is_truncated),
        // The last key or common prefix of the page: clients pass it back as the marker.
        next_marker: if page.is_truncated {
            enc.opt(page.next_start_after)
        } else {
            None
        },
        contents: (!contents.is_empty()).then_some(contents),
        common_prefixes,
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_unreserved_and_slash() {
        assert_eq!(url_encode("dir/sub-dir_x.y~z"), "dir/sub-dir_x.y~z");
        assert_eq!(url_encode("a b+c"), "a%20b%2Bc");
        assert_eq!(url_encode("100%"), "100%25");
        assert_eq!(url_encode("\u{1}\n"), "%01%0A");
        assert_eq!(url_encode("é&?=#"), "%C3%A9%26%3F%3D%23");
        assert_eq!(url_encode("<key>"), "%3Ckey%3E");
    }

    #[test]
    fn encoding_applies_only_when_asked() {
        let url = Encoding::parse(Some(&EncodingType::from_static("url"))).unwrap();
        let none = Encoding::parse(None).unwrap();
        assert_eq!(url.apply("a b".into()), "a%20b");
        assert_eq!(none.apply("a b".into()), "a b");
        assert!(url.echo().is_some() && none.echo().is_none());
        assert!(Encoding::parse(Some(&EncodingType::from_static("base64"))).is_err());
    }

    #[test]
    fn tokens_round_trip_any_key() {
        for key in ["", "a", "dir/", "é\u{1}+ /%"] {
            assert_eq!(decode_token(&encode_token(key)).unwrap(), key);
        }
        assert!(decode_token("!!!").is_err());
    }

    #[test]
    fn max_keys_is_clamped() {
        assert_eq!(max_keys(None).unwrap(), 1000);
        assert_eq!(max_keys(Some(5000)).unwrap(), 1000);
        assert_eq!(max_keys(Some(0)).unwrap(), 0);
        assert!(max_keys(Some(-1)).is_err());
    }
}
