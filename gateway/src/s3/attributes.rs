//! GetObjectAttributes: in one answer, what HeadObject and ListParts would tell about an object,
//! limited to the attributes the client names in `x-amz-object-attributes` (`ETag`, `Checksum`,
//! `ObjectParts`, `StorageClass`, `ObjectSize`); the others are left out of the XML body.
//! `Last-Modified` is always sent, as a header.
//!
//! What S3 answers for an object of an unversioned bucket, and this module with it:
//!
//! * the `ETag` in the body is **not quoted** (`<ETag>9b2cf5…</ETag>`), unlike the ETag header of
//!   HEAD/GET and the ETag of every other XML answer. s3s always quotes an XML ETag, so the
//!   handler leaves an [`UnquotedETag`] mark on its answer and [`unquote_etag`] rewrites that one
//!   element once s3s has serialized it (the S3 service of `mod.rs` calls it on every answer);
//! * `Checksum` holds the stored whole-object checksum and its `ChecksumType`. A COMPOSITE value
//!   is given without the `-N` part count that HeadObject shows after it;
//! * `ObjectParts` only for a multipart object (a single-part object gets none, even when asked
//!   for). It always holds `TotalPartsCount`; the list of parts and its paging
//!   (`x-amz-max-parts`, default and at most 1000, and `x-amz-part-number-marker`) only when the
//!   object carries an additional checksum: S3 leaves the `Part` elements out otherwise;
//! * `StorageClass` is always `STANDARD`;
//! * a delete marker is `NoSuchKey`, `versionId` may only be `null` (see `versioning.rs`), an
//!   unknown attribute name or a negative paging value is `400 InvalidArgument`.
//!
//! Not answered: the per-part checksums of `ObjectParts`. A completed object keeps only the
//! number, size and ETag of each part (`PartSummary`), not the checksums its parts were uploaded
//! with, so each `Part` carries `PartNumber` and `Size` and nothing is made up for the rest.

use crate::s3::checksum;
use crate::s3::objects::{checksum_fields, load_object};
use crate::s3::versioning::check_version_id;
use crate::s3::{load_bucket, timestamp};
use crate::state::Gateway;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use sdfbs_metadata::{ObjectRecord, PartSummary};

/// Parts listed per answer when `x-amz-max-parts` is absent, and the most one answer lists (as
/// ListParts).
const MAX_PARTS: usize = 1000;

pub async fn get(
    gw: &Gateway,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let input = req.input;
    let wanted = Wanted::parse(&input.object_attributes)?;
    let page = PartsPage::parse(input.max_parts, input.part_number_marker)?;
    check_version_id(input.version_id.as_deref())?;
    let bucket = load_bucket(gw, &input.bucket).await?;
    let object = load_object(gw, &bucket, &input.key).await?;

    let mut resp = S3Response::new(GetObjectAttributesOutput {
        e_tag: wanted.etag.then(|| ETag::Strong(object.etag.clone())),
        checksum: if wanted.checksum {
            whole_object_checksum(&object)
        } else {
            None
        },
        object_parts: if wanted.parts {
            object_parts(&object.parts, !object.checksums.is_empty(), &page)
        } else {
            None
        },
        storage_class: wanted
            .storage_class
            .then(|| StorageClass::from_static(StorageClass::STANDARD)),
        object_size: if wanted.size {
            i64::try_from(object.size).ok()
        } else {
            None
        },
        last_modified: Some(timestamp(object.last_modified)),
        ..Default::default()
    });
    if wanted.etag {
        resp.extensions.insert(UnquotedETag(object.etag));
    }
    Ok(resp)
}

/// The attributes a request names in `x-amz-object-attributes`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Wanted {
    etag: bool,
    checksum: bool,
    parts: bool,
    storage_class: bool,
    size: bool,
}

impl Wanted {
    /// SDKs send the names comma-separated in one header; the header may also be repeated.
    /// Names are case-sensitive, as in S3. At least one is required.
    fn parse(list: &[ObjectAttributes]) -> S3Result<Wanted> {
        let mut wanted = Wanted::default();
        let names = list
            .iter()
            .flat_map(|entry| entry.as_str().split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty());
        for name in names {
            let flag = match name {
                ObjectAttributes::ETAG => &mut wanted.etag,
                ObjectAttributes::CHECKSUM => &mut wanted.checksum,
                ObjectAttributes::OBJECT_PARTS => &mut wanted.parts,
                ObjectAttributes::STORAGE_CLASS => &mut wanted.storage_class,
                ObjectAttributes::OBJECT_SIZE => &mut wanted.size,
                other => {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidArgument,
                        format!(
                            "Invalid attribute name specified: `{other}` (x-amz-object-attributes takes ETag, Checksum, ObjectParts, StorageClass, ObjectSize)"
                        ),
                    ))
                }
            };
            *flag = true;
        }
        if wanted == Wanted::default() {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "Invalid attribute name specified: x-amz-object-attributes names no attribute",
            ));
        }
        Ok(wanted)
    }
}

/// Which parts of a multipart object one answer lists: at most `max`, numbered above `marker`.
#[derive(Debug, PartialEq, Eq)]
struct PartsPage {
    max: usize,
    marker: u32,
}

impl PartsPage {
    fn parse(max_parts: Option<i32>, marker: Option<i32>) -> S3Result<PartsPage> {
        let non_negative = |value: Option<i32>, header: &str| {
            u32::try_from(value.unwrap_or(0)).map_err(|_| {
                S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    format!(
                        "Argument {header} must be an integer between 0 and {}",
                        i32::MAX
                    ),
                )
            })
        };
        let max = match max_parts {
            None => MAX_PARTS,
            Some(_) => (non_negative(max_parts, "x-amz-max-parts")? as usize).min(MAX_PARTS),
        };
        Ok(PartsPage {
            max,
            marker: non_negative(marker, "x-amz-part-number-marker")?,
        })
    }
}

/// The stored whole-object checksum, as GetObjectAttributes shows it; `None` for an object
/// stored without one.
fn whole_object_checksum(object: &ObjectRecord) -> Option<Checksum> {
    if object.checksums.is_empty() {
        return None;
    }
    let composite = object.checksum_type.as_deref() == Some(checksum::COMPOSITE);
    // A COMPOSITE value is stored as HeadObject shows it, `<base64>-<part count>`; this answer
    // gives the checksum alone (base64 has no `-`, so the first `-` starts the count).
    let shown = |value: Option<String>| match value {
        Some(v) if composite => v.split('-').next().map(str::to_string),
        v => v,
    };
    let [crc32, crc32c, crc64nvme, sha1, sha256] = checksum_fields(&object.checksums).map(shown);
    Some(Checksum {
        checksum_crc32: crc32,
        checksum_crc32c: crc32c,
        checksum_crc64nvme: crc64nvme,
        checksum_sha1: sha1,
        checksum_sha256: sha256,
        checksum_type: object.checksum_type.clone().map(ChecksumType::from),
    })
}

/// `ObjectParts` of an object made of `parts` (none for a single-part object). The parts
/// themselves are listed only when the object has an additional checksum (`with_checksum`), as
/// S3 does; each carries its number and size only (see the module doc).
fn object_parts(
    parts: &[PartSummary],
    with_checksum: bool,
    page: &PartsPage,
) -> Option<GetObjectAttributesParts> {
    if parts.is_empty() {
        return None;
    }
    let total_parts_count = i32::try_from(parts.len()).ok();
    if !with_checksum {
        return Some(GetObjectAttributesParts {
            total_parts_count,
            ..Default::default()
        });
    }
    // `parts` is in ascending part number order: CompleteMultipartUpload refuses any other.
    let mut after_marker = parts.iter().filter(|p| p.number > page.marker);
    let listed: Vec<ObjectPart> = after_marker
        .by_ref()
        .take(page.max)
        .map(|p| ObjectPart {
            part_number: i32::try_from(p.number).ok(),
            size: i64::try_from(p.size).ok(),
            // Per-part checksums are not kept once an upload is completed.
            ..Default::default()
        })
        .collect();
    let is_truncated = after_marker.next().is_some();
    Some(GetObjectAttributesParts {
        total_parts_count,
        part_number_marker: i32::try_from(page.marker).ok(),
        next_part_number_marker: listed.last().and_then(|p| p.part_number),
        max_parts: i32::try_from(page.max).ok(),
        is_truncated: Some(is_truncated),
        parts: Some(listed),
    })
}

/// Left in the extensions of a GetObjectAttributes answer holding an ETag: the unquoted ETag
/// that [`unquote_etag`] puts in the serialized body in place of s3s's quoted one.
#[derive(Clone, Debug)]
pub struct UnquotedETag(String);

/// Rewrites `<ETag>"…"</ETag>` as `<ETag>…</ETag>` in a serialized GetObjectAttributes answer
/// (one marked with [`UnquotedETag`]); leaves every other answer as it is.
///
/// s3s 0.14 writes every XML ETag in quotes, which is right for all answers but this one
/// (s3s-project/s3s#629); remove this once s3s serializes GetObjectAttributes as S3 does.
pub fn unquote_etag(resp: &mut s3s::HttpResponse) {
    let Some(UnquotedETag(etag)) = resp.extensions_mut().remove::<UnquotedETag>() else {
        return;
    };
    // s3s serializes XML answers into one in-memory buffer.
    let Some(xml) = resp.body().bytes() else {
        return;
    };
    let quoted = format!("<ETag>\"{etag}\"</ETag>");
    let Some(at) = xml
        .windows(quoted.len())
        .position(|w| w == quoted.as_bytes())
    else {
        return;
    };
    let mut body = Vec::with_capacity(xml.len());
    body.extend_from_slice(&xml[..at]);
    body.extend_from_slice(format!("<ETag>{etag}</ETag>").as_bytes());
    body.extend_from_slice(&xml[at + quoted.len()..]);
    *resp.body_mut() = s3s::Body::from(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<ObjectAttributes> {
        list.iter()
            .map(|s| ObjectAttributes::from(s.to_string()))
            .collect()
    }

    fn invalid_argument(e: S3Error) {
        assert_eq!(*e.code(), S3ErrorCode::InvalidArgument);
        assert_eq!(e.status_code(), Some(http::StatusCode::BAD_REQUEST));
    }

    #[test]
    fn attribute_names_come_comma_separated_or_repeated() {
        let w = Wanted::parse(&names(&["ETag,ObjectSize"])).unwrap();
        assert_eq!(
            w,
            Wanted {
                etag: true,
                size: true,
                ..Default::default()
            }
        );
        let w = Wanted::parse(&names(&["Checksum", " ObjectParts , StorageClass"])).unwrap();
        assert_eq!(
            w,
            Wanted {
                checksum: true,
                parts: true,
                storage_class: true,
                ..Default::default()
            }
        );
        for bad in [&["etag"][..], &["ETag,Size"], &[""], &[" , "]] {
            invalid_argument(Wanted::parse(&names(bad)).unwrap_err());
        }
    }

    #[test]
    fn paging_defaults_caps_and_refuses_negatives() {
        assert_eq!(
            PartsPage::parse(None, None).unwrap(),
            PartsPage {
                max: 1000,
                marker: 0
            }
        );
        assert_eq!(
            PartsPage::parse(Some(5000), Some(7)).unwrap(),
            PartsPage {
                max: 1000,
                marker: 7
            }
        );
        assert_eq!(PartsPage::parse(Some(0), None).unwrap().max, 0);
        invalid_argument(PartsPage::parse(Some(-1), None).unwrap_err());
        invalid_argument(PartsPage::parse(None, Some(i32::MIN)).unwrap_err());
    }

    fn parts(sizes: &[u64]) -> Vec<PartSummary> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, size)| PartSummary {
                number: i as u32 + 1,
                size: *size,
                etag: format!("{i:032x}"),
            })
            .collect()
    }

    fn listed(p: &GetObjectAttributesParts) -> Vec<(i32, i64)> {
        p.parts
            .iter()
            .flatten()
            .map(|p| (p.part_number.unwrap(), p.size.unwrap()))
            .collect()
    }

    #[test]
    fn parts_are_paged_like_list_parts() {
        let all = parts(&[10, 20, 3]);
        let page = |max, marker| PartsPage { max, marker };

        assert_eq!(object_parts(&[], true, &page(1000, 0)), None);

        let p = object_parts(&all, true, &page(1000, 0)).unwrap();
        assert_eq!(listed(&p), [(1, 10), (2, 20), (3, 3)]);
        assert_eq!(p.total_parts_count, Some(3));
        assert_eq!(p.is_truncated, Some(false));
        assert_eq!(
            (p.part_number_marker, p.next_part_number_marker),
            (Some(0), Some(3))
        );
        assert_eq!(p.max_parts, Some(1000));
        assert!(p
            .parts
            .iter()
            .flatten()
            .all(|p| p.checksum_crc32.is_none() && p.checksum_sha256.is_none()));

        let p = object_parts(&all, true, &page(2, 0)).unwrap();
        assert_eq!(listed(&p), [(1, 10), (2, 20)]);
        assert_eq!(p.is_truncated, Some(true));
        assert_eq!(p.next_part_number_marker, Some(2));

        let p = object_parts(&all, true, &page(2, 2)).unwrap();
        assert_eq!(listed(&p), [(3, 3)]);
        assert_eq!(p.is_truncated, Some(false));
        assert_eq!(
            (p.part_number_marker, p.next_part_number_marker),
            (Some(2), Some(3))
        );

        // Exactly `max` parts left: not truncated.
        let p = object_parts(&all, true, &page(3, 0)).unwrap();
        assert_eq!(p.is_truncated, Some(false));

        let p = object_parts(&all, true, &page(1000, 3)).unwrap();
        assert!(listed(&p).is_empty());
        assert_eq!(
            (p.is_truncated, p.next_part_number_marker),
            (Some(false), None)
        );
        assert_eq!(p.total_parts_count, Some(3));
    }

    #[test]
    fn without_a_checksum_only_the_part_count_is_given() {
        let p = object_parts(
            &parts(&[10, 20]),
            false,
            &PartsPage::parse(None, None).unwrap(),
        )
        .unwrap();
        assert_eq!(
            p,
            GetObjectAttributesParts {
                total_parts_count: Some(2),
                ..Default::default()
            }
        );
    }

    fn object(checksums: &[(&str, &str)], checksum_type: Option<&str>) -> ObjectRecord {
        ObjectRecord {
            key: "k".into(),
            version_id: "v".into(),
            size: 3,
            etag: "e".into(),
            last_modified: 0,
            content_type: None,
            headers: Default::default(),
            user_metadata: Default::default(),
            checksums: checksums
                .iter()
                .map(|(a, v)| (a.to_string(), v.to_string()))
                .collect(),
            checksum_type: checksum_type.map(str::to_string),
            parts: Vec::new(),
            delete_marker: false,
            owner: "o".into(),
        }
    }

    #[test]
    fn a_composite_checksum_is_shown_without_its_part_count() {
        let c =
            whole_object_checksum(&object(&[("CRC32", "AAAAAA==-3")], Some("COMPOSITE"))).unwrap();
        assert_eq!(c.checksum_crc32.as_deref(), Some("AAAAAA=="));
        assert_eq!(
            c.checksum_type.as_ref().map(|t| t.as_str()),
            Some("COMPOSITE")
        );

        let c = whole_object_checksum(&object(
            &[("SHA256", "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=")],
            Some("FULL_OBJECT"),
        ))
        .unwrap();
        assert_eq!(
            c.checksum_sha256.as_deref(),
            Some("n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=")
        );
        assert_eq!(c.checksum_crc32, None);

        assert_eq!(whole_object_checksum(&object(&[], None)), None);
    }

    fn answer(xml: &str, mark: Option<&str>) -> s3s::HttpResponse {
        let mut resp = s3s::HttpResponse::new(s3s::Body::from(xml.to_string()));
        if let Some(etag) = mark {
            resp.extensions_mut().insert(UnquotedETag(etag.to_string()));
        }
        resp
    }

    fn body(resp: &s3s::HttpResponse) -> String {
        String::from_utf8(resp.body().bytes().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn only_a_marked_answer_loses_the_quotes_of_its_etag() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><GetObjectAttributesResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ETag>"d41d8cd98f00b204e9800998ecf8427e-2"</ETag><ObjectSize>0</ObjectSize></GetObjectAttributesResponse>"#;
        let mut marked = answer(xml, Some("d41d8cd98f00b204e9800998ecf8427e-2"));
        unquote_etag(&mut marked);
        assert_eq!(
            body(&marked),
            xml.replace(
                "\"d41d8cd98f00b204e9800998ecf8427e-2\"",
                "d41d8cd98f00b204e9800998ecf8427e-2"
            )
        );
        assert!(marked.extensions().get::<UnquotedETag>().is_none());

        let mut other = answer(xml, None);
        unquote_etag(&mut other);
        assert_eq!(body(&other), xml);
    }
}
