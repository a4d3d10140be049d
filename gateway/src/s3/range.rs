//! Which bytes of an object a read returns: the whole object, a `Range`, a `partNumber` of a
//! multipart object, or the `x-amz-copy-source-range` of an UploadPartCopy.
//!
//! Unsatisfiable ranges are `InvalidRange` (416), as AWS answers; a part number past the last
//! part is `InvalidPartNumber` (416).

use s3s::dto::Range;
use s3s::{S3Error, S3ErrorCode, S3Result};
use sdfbs_metadata::ObjectRecord;

/// The bytes `[start, end)` of an object that a read returns.
#[derive(Debug, PartialEq, Eq)]
pub struct Selection {
    pub start: u64,
    pub end: u64,
    /// `Content-Range` of a partial answer (206); `None` for the whole object.
    pub content_range: Option<String>,
    /// `x-amz-mp-parts-count` when a part was asked for.
    pub parts_count: Option<i32>,
}

impl Selection {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// The whole object: checksums of the object describe these bytes.
    pub fn is_whole(&self) -> bool {
        self.content_range.is_none()
    }
}

fn partial(start: u64, end: u64, size: u64, parts_count: Option<i32>) -> Selection {
    Selection {
        start,
        end,
        content_range: Some(format!(
            "bytes {}-{}/{}",
            start,
            end.saturating_sub(1),
            size
        )),
        parts_count,
    }
}

/// Resolves a GET/HEAD's `Range` header and `partNumber` against an object.
pub fn resolve(
    range: Option<&Range>,
    part_number: Option<i32>,
    object: &ObjectRecord,
) -> S3Result<Selection> {
    let size = object.size;
    match (range, part_number) {
        (Some(_), Some(_)) => Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter",
        )),
        (None, None) => Ok(Selection {
            start: 0,
            end: size,
            content_range: None,
            parts_count: None,
        }),
        (Some(range), None) => {
            let r = range.check(size).map_err(|_| {
                S3Error::with_message(
                    S3ErrorCode::InvalidRange,
                    format!("The requested range is not satisfiable (object size {size})"),
                )
            })?;
            Ok(partial(r.start, r.end, size, None))
        }
        (None, Some(n)) => {
            if !(1..=10_000).contains(&n) {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    "Part number must be an integer between 1 and 10000, inclusive",
                ));
            }
            if object.parts.is_empty() {
                // A single-part object has one part: itself.
                return if n == 1 {
                    Ok(Selection {
                        start: 0,
                        end: size,
                        content_range: None,
                        parts_count: None,
                    })
                } else {
                    Err(invalid_part_number())
                };
            }
            let index = usize::try_from(n - 1).map_err(|_| invalid_part_number())?;
            let part = object.parts.get(index).ok_or_else(invalid_part_number)?;
            let start: u64 = object.parts[..index].iter().map(|p| p.size).sum();
            let count = i32::try_from(object.parts.len()).unwrap_or(i32::MAX);
            Ok(partial(start, start + part.size, size, Some(count)))
        }
    }
}

fn invalid_part_number() -> S3Error {
    // AWS's code for this case; s3s has no constant for it.
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("InvalidPartNumber".into()),
        "The requested partnumber is not satisfiable",
    );
    e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    e
}

/// Resolves `x-amz-copy-source-range: bytes=first-last` (both bounds required, inclusive)
/// against the size of the source; `None` copies the whole source.
pub fn copy_source_range(header: Option<&str>, size: u64) -> S3Result<(u64, u64)> {
    let Some(header) = header else {
        return Ok((0, size));
    };
    let bad = || {
        S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("The x-amz-copy-source-range `{header}` is not valid: use bytes=first-last"),
        )
    };
    let spec = header.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (first, last) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = first.parse().map_err(|_| bad())?;
    let last: u64 = last.parse().map_err(|_| bad())?;
    if first > last || last >= size {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRange,
            format!("Range specified is not valid for source object of size: {size}"),
        ));
    }
    Ok((first, last + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdfbs_metadata::PartSummary;
    use std::collections::BTreeMap;

    fn object(size: u64, parts: &[u64]) -> ObjectRecord {
        ObjectRecord {
            key: "k".into(),
            version_id: "v".into(),
            size,
            etag: "e".into(),
            last_modified: 0,
            content_type: None,
            headers: BTreeMap::new(),
            user_metadata: BTreeMap::new(),
            checksums: BTreeMap::new(),
            checksum_type: None,
            parts: parts
                .iter()
                .enumerate()
                .map(|(i, s)| PartSummary {
                    number: i as u32 + 1,
                    size: *s,
                    etag: "p".into(),
                })
                .collect(),
            delete_marker: false,
            owner: "o".into(),
        }
    }

    #[test]
    fn ranges() {
        let o = object(100, &[]);
        let r = |s: &str| Range::parse(s).unwrap();
        let sel = resolve(Some(&r("bytes=10-19")), None, &o).unwrap();
        assert_eq!((sel.start, sel.end), (10, 20));
        assert_eq!(sel.content_range.as_deref(), Some("bytes 10-19/100"));
        let sel = resolve(Some(&r("bytes=90-")), None, &o).unwrap();
        assert_eq!((sel.start, sel.end), (90, 100));
        let sel = resolve(Some(&r("bytes=-10")), None, &o).unwrap();
        assert_eq!((sel.start, sel.end), (90, 100));
        let sel = resolve(Some(&r("bytes=50-1000")), None, &o).unwrap();
        assert_eq!((sel.start, sel.end), (50, 100));
        let e = resolve(Some(&r("bytes=100-")), None, &o).unwrap_err();
        assert_eq!(
            e.status_code(),
            Some(http::StatusCode::RANGE_NOT_SATISFIABLE)
        );
        assert_eq!(*e.code(), S3ErrorCode::InvalidRange);
        let e = resolve(Some(&r("bytes=0-")), None, &object(0, &[])).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::InvalidRange);
        assert!(resolve(None, None, &o).unwrap().is_whole());
        assert!(resolve(Some(&r("bytes=0-1")), Some(1), &o).is_err());
    }

    #[test]
    fn part_numbers() {
        let o = object(25, &[10, 10, 5]);
        let sel = resolve(None, Some(2), &o).unwrap();
        assert_eq!((sel.start, sel.end, sel.parts_count), (10, 20, Some(3)));
        assert_eq!(sel.content_range.as_deref(), Some("bytes 10-19/25"));
        let sel = resolve(None, Some(3), &o).unwrap();
        assert_eq!((sel.start, sel.end), (20, 25));
        let e = resolve(None, Some(4), &o).unwrap_err();
        assert_eq!(
            e.status_code(),
            Some(http::StatusCode::RANGE_NOT_SATISFIABLE)
        );
        assert!(resolve(None, Some(0), &o).is_err());
        let single = object(7, &[]);
        assert_eq!(resolve(None, Some(1), &single).unwrap().len(), 7);
        assert!(resolve(None, Some(2), &single).is_err());
    }

    #[test]
    fn copy_ranges() {
        assert_eq!(copy_source_range(None, 10).unwrap(), (0, 10));
        assert_eq!(copy_source_range(Some("bytes=2-5"), 10).unwrap(), (2, 6));
        let e = copy_source_range(Some("bytes=2-10"), 10).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::InvalidRange);
        assert!(copy_source_range(Some("bytes=5-2"), 10).is_err());
        assert!(copy_source_range(Some("bytes=-5"), 10).is_err());
        assert!(copy_source_range(Some("2-5"), 10).is_err());
    }
}
