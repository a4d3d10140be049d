//! Listing a bucket whose objects are spread over many partitions.
//!
//! The objects table is partitioned by `(bucket_id, shard)` with the key as clustering column,
//! so each shard is a sorted run of keys (Scylla and Cassandra compare `text` as UTF-8 bytes,
//! which is also Rust's `str` order and S3's listing order). A listing is a k-way merge of the
//! shards: each shard is read in key order, a small batch at a time (keyset paging:
//! `key >= ? LIMIT ?`), and the smallest head wins.
//!
//! Common prefixes are folded while merging: when a key folds into `photos/`, every shard
//! drops what it holds under `photos/` and, if it must read more, restarts at the first
//! string after all of them (`photos0`, see [`prefix_successor`]) instead of reading every key
//! under the prefix. A bucket with a million keys under one folded prefix costs one batch per
//! shard, not a million rows.
//!
//! The merge is written against [`ShardReader`] so it is tested here without a server.

use crate::{ListQuery, Result};
use std::collections::VecDeque;

/// Stable 64-bit FNV-1a. The shard of a key must never change between processes or releases
/// (std's hasher is randomly seeded), or keys would be looked up in the wrong partition.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The shard of `key` in a bucket of `shard_count` shards (0 is treated as 1).
pub(crate) fn shard_of(key: &str, shard_count: u32) -> i32 {
    let n = u64::from(shard_count.max(1));
    // n <= u32::MAX, so the remainder fits; shard numbers are stored as CQL `int`.
    (fnv1a64(key.as_bytes()) % n) as i32
}

/// The smallest string strictly greater than `key` (`key` followed by U+0000).
pub(crate) fn after(key: &str) -> String {
    let mut s = String::with_capacity(key.len() + 1);
    s.push_str(key);
    s.push('\0');
    s
}

/// The smallest string greater than every string that starts with `prefix`: the last
/// character replaced by the next one (UTF-8 byte order is code point order). `None` when no
/// such string exists (empty prefix, or only U+10FFFF characters).
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000; // skip the surrogate range, which no `char` can hold
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// One row as a shard returns it: the key and, for a listable object, its value. `None`
/// marks a delete marker, which is skipped (it is neither listed nor folded).
pub(crate) type ShardRow<V> = (String, Option<V>);

/// Reads one shard of a bucket in key order.
pub(crate) trait ShardReader {
    type Value;
    /// At most `limit` rows of `shard` with key `>= from`, in key order.
    async fn read(
        &self,
        shard: i32,
        from: &str,
        limit: usize,
    ) -> Result<Vec<ShardRow<Self::Value>>>;
}

/// A merged page; the caller turns it into a `ListPage`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MergedPage<V> {
    pub objects: Vec<V>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_start_after: Option<String>,
}

enum Entry<V> {
    Object(String, V),
    Prefix(String),
}

struct Cursor<V> {
    shard: i32,
    buf: VecDeque<ShardRow<V>>,
    /// Where the next read of this shard starts (inclusive).
    next_from: String,
    /// No more rows of interest in this shard.
    done: bool,
}

struct Merge<'a, R: ShardReader> {
    reader: &'a R,
    prefix: &'a str,
    delimiter: Option<&'a str>,
    start_after: Option<&'a str>,
    batch: usize,
    cursors: Vec<Cursor<R::Value>>,
}

impl<R: ShardReader> Merge<'_, R> {
    /// Makes sure cursor `i` has a head row under the prefix, or is done.
    async fn fill(&mut self, i: usize) -> Result<()> {
        let c = &mut self.cursors[i];
        if c.buf.is_empty() && !c.done {
            let rows = self.reader.read(c.shard, &c.next_from, self.batch).await?;
            if rows.len() < self.batch {
                c.done = true;
            }
            if let Some((last, _)) = rows.last() {
                c.next_from = after(last);
            }
            c.buf.extend(rows);
        }
        // Keys are sorted and the first read starts at or after the prefix, so the first key
        // outside the prefix ends this shard.
        if c.buf
            .front()
            .is_some_and(|(k, _)| !k.starts_with(self.prefix))
        {
            c.buf.clear();
            c.done = true;
        }
        Ok(())
    }

    async fn next_entry(&mut self) -> Result<Option<Entry<R::Value>>> {
        loop {
            let mut best: Option<usize> = None;
            for i in 0..self.cursors.len() {
                self.fill(i).await?;
                if let Some((key, _)) = self.cursors[i].buf.front() {
                    if best.is_none_or(|b| key < &self.cursors[b].buf[0].0) {
                        best = Some(i);
                    }
                }
            }
            let Some(i) = best else { return Ok(None) };
            let Some((key, value)) = self.cursors[i].buf.pop_front() else {
                return Ok(None);
            };
            let Some(value) = value else { continue }; // delete marker
            if let Some(cp) = self.common_prefix_of(&key) {
                self.skip_prefix(&cp);
                if self.start_after.is_none_or(|sa| cp.as_str() > sa) {
                    return Ok(Some(Entry::Prefix(cp)));
                }
                continue;
            }
            return Ok(Some(Entry::Object(key, value)));
        }
    }

    fn common_prefix_of(&self, key: &str) -> Option<String> {
        let delimiter = self.delimiter.filter(|d| !d.is_empty())?;
        let rest = &key[self.prefix.len()..];
        let pos = rest.find(delimiter)?;
        Some(key[..self.prefix.len() + pos + delimiter.len()].to_owned())
    }

    /// Drops every buffered key under `cp` and moves each shard's next read past it.
    fn skip_prefix(&mut self, cp: &str) {
        let successor = prefix_successor(cp);
        for c in &mut self.cursors {
            while c.buf.front().is_some_and(|(k, _)| k.starts_with(cp)) {
                c.buf.pop_front();
            }
            if c.buf.is_empty() && !c.done {
                match &successor {
                    Some(s) if *s > c.next_from => c.next_from = s.clone(),
                    Some(_) => {}
                    None => c.done = true,
                }
            }
        }
    }
}

/// Merges `shard_count` shards into one listing page (see the module docs).
pub(crate) async fn merge_listing<R: ShardReader>(
    reader: &R,
    shard_count: u32,
    query: &ListQuery,
) -> Result<MergedPage<R::Value>> {
    let mut page = MergedPage {
        objects: Vec::new(),
        common_prefixes: Vec::new(),
        is_truncated: false,
        next_start_after: None,
    };
    if query.max_keys == 0 {
        return Ok(page);
    }
    let shards = shard_count.max(1);
    let mut from = query.prefix.clone();
    if let Some(sa) = &query.start_after {
        let a = after(sa);
        if a > from {
            from = a;
        }
    }
    // Each shard holds about 1/shards of the page; read a little more to avoid a second
    // round trip, and never more than 1,000 rows per request.
    let batch = ((query.max_keys + 1) / shards as usize + 2).clamp(16, 1000);
    let mut merge = Merge {
        reader,
        prefix: &query.prefix,
        delimiter: query.delimiter.as_deref(),
        start_after: query.start_after.as_deref(),
        batch,
        cursors: (0..shards as i32)
            .map(|shard| Cursor {
                shard,
                buf: VecDeque::new(),
                next_from: from.clone(),
                done: false,
            })
            .collect(),
    };
    let mut emitted = 0usize;
    while let Some(entry) = merge.next_entry().await? {
        if emitted == query.max_keys {
            // One entry more exists beyond this page.
            page.is_truncated = true;
            break;
        }
        emitted += 1;
        match entry {
            Entry::Object(key, value) => {
                page.next_start_after = Some(key);
                page.objects.push(value);
            }
            Entry::Prefix(cp) => {
                page.next_start_after = Some(cp.clone());
                page.common_prefixes.push(cp);
            }
        }
    }
    if !page.is_truncated {
        page.next_start_after = None;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Shards in memory, counting the rows handed out.
    struct MemShards {
        shards: Vec<BTreeMap<String, bool>>,
        rows_read: AtomicUsize,
    }

    impl MemShards {
        fn new(count: u32, keys: &[(String, bool)]) -> Self {
            let mut shards = vec![BTreeMap::new(); count as usize];
            for (k, listable) in keys {
                shards[shard_of(k, count) as usize].insert(k.clone(), *listable);
            }
            MemShards {
                shards,
                rows_read: AtomicUsize::new(0),
            }
        }
    }

    impl ShardReader for MemShards {
        type Value = String;
        async fn read(
            &self,
            shard: i32,
            from: &str,
            limit: usize,
        ) -> Result<Vec<ShardRow<String>>> {
            let rows: Vec<_> = self.shards[shard as usize]
                .range(from.to_owned()..)
                .take(limit)
                .map(|(k, listable)| (k.clone(), listable.then(|| k.clone())))
                .collect();
            self.rows_read.fetch_add(rows.len(), Ordering::Relaxed);
            Ok(rows)
        }
    }

    /// What S3 would answer, computed the slow way over all keys.
    fn reference(keys: &[(String, bool)], q: &ListQuery) -> Vec<(bool, String)> {
        let mut sorted: Vec<_> = keys
            .iter()
            .filter(|(_, l)| *l)
            .map(|(k, _)| k.clone())
            .collect();
        sorted.sort();
        let mut out: Vec<(bool, String)> = Vec::new();
        for k in sorted {
            if !k.starts_with(&q.prefix) {
                continue;
            }
            let entry = match q.delimiter.as_deref().filter(|d| !d.is_empty()) {
                Some(d) => match k[q.prefix.len()..].find(d) {
                    Some(p) => (true, k[..q.prefix.len() + p + d.len()].to_owned()),
                    None => (false, k.clone()),
                },
                None => (false, k.clone()),
            };
            if q.start_after.as_ref().is_some_and(|sa| entry.1 <= *sa) {
                continue;
            }
            if out.last() != Some(&entry) {
                out.push(entry);
            }
        }
        out
    }

    async fn list_all(shards: &MemShards, count: u32, q: &ListQuery) -> Vec<(bool, String)> {
        let mut q = q.clone();
        let mut out = Vec::new();
        loop {
            let page = merge_listing(shards, count, &q).await.unwrap();
            assert!(page.objects.len() + page.common_prefixes.len() <= q.max_keys);
            let mut entries: Vec<(bool, String)> = page
                .objects
                .into_iter()
                .map(|k| (false, k))
                .chain(page.common_prefixes.into_iter().map(|p| (true, p)))
                .collect();
            entries.sort_by(|a, b| a.1.cmp(&b.1));
            out.extend(entries);
            if !page.is_truncated {
                assert_eq!(page.next_start_after, None);
                return out;
            }
            q.start_after = page.next_start_after;
        }
    }

    fn sample_keys() -> Vec<(String, bool)> {
        let mut keys = Vec::new();
        for i in 0..300 {
            keys.push((format!("a/{i:04}"), true));
            keys.push((format!("b/c/{i}"), i % 7 != 0));
        }
        for k in [
            "a", "a+b", "a b", "a%2F", "é/x", "é/y", "ü", "z/", "z//", "/lead", "b/", "b/c",
        ] {
            keys.push((k.to_owned(), true));
        }
        keys.push(("dead/marker".to_owned(), false));
        keys.push(("x".repeat(1024), true));
        keys
    }

    #[tokio::test]
    async fn merge_matches_reference_for_many_queries() {
        let keys = sample_keys();
        for count in [1, 3, 16] {
            let shards = MemShards::new(count, &keys);
            for prefix in ["", "a", "a/", "b/", "b/c/1", "é", "nothing"] {
                for delimiter in [None, Some("/"), Some("c/"), Some("é"), Some("")] {
                    for start_after in [None, Some("a/0150"), Some("a/"), Some("b"), Some("zzzz")] {
                        for max_keys in [1, 7, 1000] {
                            let q = ListQuery {
                                prefix: prefix.to_owned(),
                                delimiter: delimiter.map(str::to_owned),
                                start_after: start_after.map(str::to_owned),
                                max_keys,
                            };
                            assert_eq!(
                                list_all(&shards, count, &q).await,
                                reference(&keys, &q),
                                "shards {count} query {q:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn folding_skips_instead_of_reading_every_key() {
        let mut keys: Vec<(String, bool)> =
            (0..20_000).map(|i| (format!("big/{i:06}"), true)).collect();
        keys.push(("after".to_owned(), true));
        keys.push(("zeta".to_owned(), true));
        let shards = MemShards::new(8, &keys);
        let q = ListQuery {
            delimiter: Some("/".into()),
            max_keys: 1000,
            ..Default::default()
        };
        let page = merge_listing(&shards, 8, &q).await.unwrap();
        assert_eq!(page.common_prefixes, vec!["big/".to_owned()]);
        assert_eq!(page.objects, vec!["after".to_owned(), "zeta".to_owned()]);
        assert!(!page.is_truncated);
        let read = shards.rows_read.load(Ordering::Relaxed);
        assert!(read < 2_000, "read {read} rows to fold 20,000 keys");
    }

    #[tokio::test]
    async fn zero_max_keys_returns_nothing() {
        let shards = MemShards::new(2, &sample_keys());
        let q = ListQuery {
            max_keys: 0,
            ..Default::default()
        };
        let page = merge_listing(&shards, 2, &q).await.unwrap();
        assert!(page.objects.is_empty() && page.common_prefixes.is_empty());
    }

    #[test]
    fn shard_hash_is_stable_and_spreads() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        assert_eq!(shard_of("anything", 0), 0);
        assert_eq!(shard_of("anything", 1), 0);
        let mut counts = [0usize; 16];
        for i in 0..16_000 {
            counts[shard_of(&format!("backup/2024/file-{i}"), 16) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn successors() {
        assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_successor("").as_deref(), None);
        assert_eq!(prefix_successor("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        assert_eq!(prefix_successor("x\u{10FFFF}").as_deref(), Some("y"));
        assert_eq!(after("k"), "k\0");
        // Every string under the prefix sorts before the successor.
        let s = prefix_successor("é").unwrap();
        assert!("é\u{10FFFF}zzz" < s.as_str() && "é" < s.as_str());
    }
}
