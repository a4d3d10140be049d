//! ListObjects and ListMultipartUploads over the ordered keys of redb.
//!
//! A listing is a range scan from the later of (prefix, start-after) to the end of the prefix.
//! When a key folds into a common prefix (it holds the delimiter after the prefix), the common
//! prefix is emitted once and the scan re-seeks to the smallest key after everything that starts
//! with it ([`prefix_successor`]), so a folded directory of a million keys costs one seek, not a
//! million reads.

use super::codec::*;
use super::tables::get;
use crate::{
    ListPage, ListQuery, ObjectRecord, Result, UploadListPage, UploadListQuery, UploadRecord,
};
use redb::ReadableTable;
use std::ops::Bound;

/// What one scan step found.
enum Entry<R> {
    Item(String, R),
    Prefix(String),
}

/// The folding scan shared by both listings. The row callback extracts the listing key and
/// the record from a value (or `None` to skip the row, e.g. a delete marker).
struct Scan<'a> {
    /// bucket id, 0x00
    bucket_prefix: Vec<u8>,
    prefix: &'a str,
    delimiter: Option<&'a str>,
    /// Exclusive lower bound on emitted common prefixes.
    prefix_after: Option<&'a str>,
    max: usize,
}

impl Scan<'_> {
    fn run<R>(
        &self,
        table: &impl ReadableTable<&'static [u8], &'static [u8]>,
        mut lower: Bound<Vec<u8>>,
        mut row: impl FnMut(&[u8]) -> Result<Option<(String, R)>>,
    ) -> Result<(Vec<Entry<R>>, bool)> {
        let mut scan_prefix = self.bucket_prefix.clone();
        scan_prefix.extend_from_slice(self.prefix.as_bytes());
        let mut out = Vec::new();
        let Some(end) = prefix_successor(&scan_prefix) else {
            return Ok((out, false));
        };
        if self.max == 0 {
            return Ok((out, false));
        }
        let delimiter = self.delimiter.filter(|d| !d.is_empty());
        'seek: loop {
            let range = table
                .range::<&[u8]>((bound_as_slice(&lower), Bound::Excluded(end.as_slice())))
                .map_err(backend)?;
            for item in range {
                let (_, v) = item.map_err(backend)?;
                let Some((key, rec)) = row(v.value())? else {
                    continue;
                };
                let folded = delimiter.and_then(|d| {
                    let rest = key.get(self.prefix.len()..)?;
                    let pos = rest.find(d)?;
                    Some(key[..self.prefix.len() + pos + d.len()].to_string())
                });
                if let Some(cp) = folded {
                    if self.prefix_after.is_none_or(|a| cp.as_str() > a) {
                        if out.len() == self.max {
                            return Ok((out, true));
                        }
                        out.push(Entry::Prefix(cp.clone()));
                    }
                    let mut skip = self.bucket_prefix.clone();
                    skip.extend_from_slice(cp.as_bytes());
                    match prefix_successor(&skip) {
                        Some(next) => lower = Bound::Included(next),
                        None => return Ok((out, false)),
                    }
                    continue 'seek;
                }
                if out.len() == self.max {
                    return Ok((out, true));
                }
                out.push(Entry::Item(key, rec));
            }
            return Ok((out, false));
        }
    }
}

fn bound_as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The later of "start of the prefix" and "strictly after `marker`".
fn lower_bound(scan_prefix: Vec<u8>, marker: Option<Vec<u8>>) -> Bound<Vec<u8>> {
    match marker {
        Some(m) if m >= scan_prefix => Bound::Excluded(m),
        _ => Bound::Included(scan_prefix),
    }
}

pub(crate) fn list_objects(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket_id: &str,
    q: &ListQuery,
) -> Result<ListPage> {
    let bp = bucket_prefix(bucket_id);
    let mut scan_prefix = bp.clone();
    scan_prefix.extend_from_slice(q.prefix.as_bytes());
    let marker = q.start_after.as_ref().map(|s| object_key(bucket_id, s));
    let scan = Scan {
        bucket_prefix: bp,
        prefix: &q.prefix,
        delimiter: q.delimiter.as_deref(),
        prefix_after: q.start_after.as_deref(),
        max: q.max_keys,
    };
    let (entries, is_truncated) = scan.run(objects, lower_bound(scan_prefix, marker), |v| {
        let rec: ObjectRecord = decode(v, "object")?;
        // Delete markers are not listed, and do not make a common prefix appear.
        Ok((!rec.delete_marker).then(|| (rec.key.clone(), rec)))
    })?;
    let mut page = ListPage {
        is_truncated,
        ..ListPage::default()
    };
    let mut last = None;
    for e in entries {
        match e {
            Entry::Item(k, rec) => {
                last = Some(k);
                page.objects.push(rec);
            }
            Entry::Prefix(p) => {
                last = Some(p.clone());
                page.common_prefixes.push(p);
            }
        }
    }
    if is_truncated {
        page.next_start_after = last;
    }
    Ok(page)
}

pub(crate) fn list_uploads(
    uploads: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket_id: &str,
    q: &UploadListQuery,
) -> Result<UploadListPage> {
    let bp = bucket_prefix(bucket_id);
    let mut scan_prefix = bp.clone();
    scan_prefix.extend_from_slice(q.prefix.as_bytes());
    // key-marker alone: uploads of keys strictly after it; with upload-id-marker: uploads after
    // (key, upload id).
    let marker = q.key_marker.as_ref().map(|k| match &q.upload_id_marker {
        Some(u) => upload_key(bucket_id, k, u),
        None => {
            // After every upload id of this key (upload ids are ASCII, below 0xFF).
            let mut m = upload_key(bucket_id, k, "");
            m.push(0xFF);
            m
        }
    });
    let scan = Scan {
        bucket_prefix: bp,
        prefix: &q.prefix,
        delimiter: q.delimiter.as_deref(),
        prefix_after: q.key_marker.as_deref(),
        max: q.max_uploads,
    };
    let (entries, is_truncated) = scan.run(uploads, lower_bound(scan_prefix, marker), |v| {
        let rec: UploadRecord = decode(v, "upload")?;
        Ok(Some((rec.key.clone(), rec)))
    })?;
    let mut page = UploadListPage {
        is_truncated,
        ..UploadListPage::default()
    };
    let mut last: Option<(String, Option<String>)> = None;
    for e in entries {
        match e {
            Entry::Item(k, rec) => {
                last = Some((k, Some(rec.upload_id.clone())));
                page.uploads.push(rec);
            }
            Entry::Prefix(p) => {
                last = Some((p.clone(), None));
                page.common_prefixes.push(p);
            }
        }
    }
    if is_truncated {
        if let Some((k, u)) = last {
            page.next_key_marker = Some(k);
            page.next_upload_id_marker = u;
        }
    }
    Ok(page)
}

/// Reads one upload row.
pub(crate) fn get_upload(
    uploads: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket_id: &str,
    key: &str,
    upload_id: &str,
) -> Result<Option<UploadRecord>> {
    get(uploads, &upload_key(bucket_id, key, upload_id), "upload")
}
