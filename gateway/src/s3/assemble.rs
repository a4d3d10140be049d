//! Validation of a CompleteMultipartUpload part list, and what the completed object is made
//! of: AWS's rules and codes (ascending part numbers or `InvalidPartOrder`; parts that exist
//! with the given ETag and checksum or `InvalidPart`; every part but the last at least 5 MiB or
//! `EntityTooSmall`), the multipart ETag (MD5 of the concatenated binary part MD5s, `-N`) and
//! the object's checksum (COMPOSITE or FULL_OBJECT). Pure functions: no I/O.

use crate::s3::checksum::{self, Algorithm};
use s3s::{S3Error, S3ErrorCode, S3Result};
use sdfbs_metadata::{PartRecord, PartSummary};
use std::collections::BTreeMap;

/// Every part but the last must be at least this long.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// A part named by CompleteMultipartUpload.
#[derive(Debug)]
pub struct ListedPart {
    pub number: u32,
    pub etag: Option<String>,
    /// A checksum value the client gives for the part, with its algorithm.
    pub checksum: Option<(Algorithm, String)>,
}

/// What CompleteMultipartUpload commits, once the part list is validated.
#[derive(Debug, PartialEq)]
pub struct Assembled {
    pub etag: String,
    pub size: u64,
    pub parts: Vec<PartSummary>,
    pub checksum: Option<(Algorithm, String)>,
}

/// Validates the parts a client lists against the stored parts, as AWS does, and computes the
/// object's ETag, size and checksum.
pub fn assemble(
    listed: &[ListedPart],
    stored: &BTreeMap<u32, PartRecord>,
    algorithm: Option<Algorithm>,
    checksum_type: Option<&str>,
) -> S3Result<Assembled> {
    if listed.is_empty() {
        return Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema: it names no part",
        ));
    }
    for pair in listed.windows(2) {
        if pair[0].number >= pair[1].number {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number.",
            ));
        }
    }
    let invalid_part = |n: u32, why: &str| {
        S3Error::with_message(
            S3ErrorCode::InvalidPart,
            format!("One or more of the specified parts could not be found or did not match: part {n} {why}"),
        )
    };
    let mut chosen = Vec::with_capacity(listed.len());
    for (i, l) in listed.iter().enumerate() {
        let part = stored
            .get(&l.number)
            .ok_or_else(|| invalid_part(l.number, "was not uploaded"))?;
        if let Some(etag) = &l.etag {
            let etag = etag.trim().trim_start_matches("W/").trim_matches('"');
            if etag != part.etag {
                return Err(invalid_part(l.number, "has another ETag"));
            }
        }
        if let Some((a, v)) = &l.checksum {
            if part.checksums.get(a.name()).map(|s| s.as_str()) != Some(v.trim()) {
                return Err(invalid_part(l.number, "has another checksum"));
            }
        }
        if i + 1 < listed.len() && part.size < MIN_PART_SIZE {
            return Err(S3Error::with_message(
                S3ErrorCode::EntityTooSmall,
                format!(
                    "Your proposed upload is smaller than the minimum allowed size: part {} is {} bytes, every part but the last must be at least {MIN_PART_SIZE} bytes",
                    l.number, part.size
                ),
            ));
        }
        chosen.push(part);
    }
    let etags: Vec<&str> = chosen.iter().map(|p| p.etag.as_str()).collect();
    let etag = checksum::multipart_etag(&etags).ok_or_else(|| {
        S3Error::with_message(
            S3ErrorCode::InternalError,
            "a stored part ETag is not an MD5",
        )
    })?;
    let checksum = match (algorithm, checksum_type) {
        (Some(a), Some(t)) => {
            let values: Option<Vec<&str>> = chosen
                .iter()
                .map(|p| p.checksums.get(a.name()).map(String::as_str))
                .collect();
            match values {
                // Every part was written with the upload's algorithm computed; a part without
                // it would be a bug, and the object then simply carries no checksum.
                None => None,
                Some(values) => {
                    let value = if t == checksum::FULL_OBJECT {
                        let with_len: Vec<(&str, u64)> = values
                            .iter()
                            .zip(&chosen)
                            .map(|(v, p)| (*v, p.size))
                            .collect();
                        checksum::full_object(a, &with_len)
                    } else {
                        checksum::composite(a, &values)
                    };
                    value.map(|v| (a, v))
                }
            }
        }
        _ => None,
    };
    Ok(Assembled {
        etag,
        size: chosen.iter().map(|p| p.size).sum(),
        parts: chosen
            .iter()
            .map(|p| PartSummary {
                number: p.number,
                size: p.size,
                etag: p.etag.clone(),
            })
            .collect(),
        checksum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::crypto::{Checksum as _, Md5};

    fn part(number: u32, size: u64, body: &[u8]) -> PartRecord {
        PartRecord {
            number,
            size,
            etag: hex::encode(Md5::checksum(body)),
            last_modified: 0,
            checksums: BTreeMap::new(),
            chunks: vec![],
        }
    }

    fn listed(number: u32, etag: Option<&str>) -> ListedPart {
        ListedPart {
            number,
            etag: etag.map(str::to_string),
            checksum: None,
        }
    }

    fn stored(parts: Vec<PartRecord>) -> BTreeMap<u32, PartRecord> {
        parts.into_iter().map(|p| (p.number, p)).collect()
    }

    #[test]
    fn assembles_a_valid_list() {
        let s = stored(vec![
            part(1, MIN_PART_SIZE, b"a"),
            part(2, MIN_PART_SIZE, b"b"),
            part(3, 10, b"c"),
        ]);
        let e1 = s[&1].etag.clone();
        let a = assemble(
            &[listed(1, Some(&format!("\"{e1}\""))), listed(3, None)],
            &s,
            None,
            None,
        )
        .unwrap();
        assert_eq!(a.size, MIN_PART_SIZE + 10);
        assert_eq!(
            a.parts.iter().map(|p| p.number).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(
            Some(a.etag),
            checksum::multipart_etag(&[&s[&1].etag, &s[&3].etag])
        );
        assert!(a.checksum.is_none());
    }

    #[test]
    fn rejects_bad_lists_with_aws_codes() {
        let s = stored(vec![
            part(1, 100, b"a"),
            part(2, MIN_PART_SIZE, b"b"),
            part(3, 10, b"c"),
        ]);
        let code = |l: &[ListedPart]| assemble(l, &s, None, None).unwrap_err().code().clone();
        assert_eq!(
            code(&[listed(2, None), listed(1, None)]),
            S3ErrorCode::InvalidPartOrder
        );
        assert_eq!(
            code(&[listed(2, None), listed(2, None)]),
            S3ErrorCode::InvalidPartOrder
        );
        assert_eq!(code(&[listed(4, None)]), S3ErrorCode::InvalidPart);
        assert_eq!(code(&[listed(2, Some("0123"))]), S3ErrorCode::InvalidPart);
        assert_eq!(
            code(&[listed(1, None), listed(2, None)]),
            S3ErrorCode::EntityTooSmall
        );
        assert_eq!(code(&[]), S3ErrorCode::MalformedXML);
        // A small last part is fine, and so is a single small part.
        assert!(assemble(&[listed(2, None), listed(3, None)], &s, None, None).is_ok());
        assert!(assemble(&[listed(1, None)], &s, None, None).is_ok());
    }

    #[test]
    fn checksums_of_multipart_objects() {
        let mut p1 = part(1, MIN_PART_SIZE, b"a");
        let mut p2 = part(2, 3, b"b");
        let d1 = vec![7u8; MIN_PART_SIZE as usize];
        let d2 = b"xyz".to_vec();
        let crc = |d: &[u8]| {
            let mut h = checksum::BodyDigests::new([Algorithm::Crc32c]);
            crate::pipeline::BodyHasher::update(&mut h, d);
            h.finish().checksums[&Algorithm::Crc32c].clone()
        };
        p1.checksums.insert("CRC32C".into(), crc(&d1));
        p2.checksums.insert("CRC32C".into(), crc(&d2));
        let s = stored(vec![p1.clone(), p2.clone()]);
        let l = [listed(1, None), listed(2, None)];
        let full = assemble(&l, &s, Some(Algorithm::Crc32c), Some(checksum::FULL_OBJECT)).unwrap();
        let whole = [d1.clone(), d2.clone()].concat();
        assert_eq!(full.checksum, Some((Algorithm::Crc32c, crc(&whole))));
        let comp = assemble(&l, &s, Some(Algorithm::Crc32c), Some(checksum::COMPOSITE)).unwrap();
        let expected = checksum::composite(
            Algorithm::Crc32c,
            &[&p1.checksums["CRC32C"], &p2.checksums["CRC32C"]],
        );
        assert_eq!(comp.checksum.map(|c| c.1), expected);
        assert!(expected.is_some_and(|v| v.ends_with("-2")));
        // A part checksum the client names must match the stored one.
        let mut bad = listed(1, None);
        bad.checksum = Some((Algorithm::Crc32c, "AAAAAA==".into()));
        let e = assemble(&[bad, listed(2, None)], &s, None, None).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::InvalidPart);
    }
}
