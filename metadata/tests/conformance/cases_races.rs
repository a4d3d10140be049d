//! Races between the operations whose atomicity a distributed backend can get wrong.
//!
//! The embedded store runs every write in one serialized transaction, so these hold by
//! construction there; a ScyllaDB/Cassandra backend makes each of them out of several
//! statements (lightweight transactions, batches, counters), and every gap between them is a
//! window in which a concurrent writer can slip through. Each case starts many writers at once
//! (`tokio::spawn` behind a barrier, with round-dependent staggering so that over the rounds
//! the racers meet at different points of each other's work) and then checks what the trait's
//! doc comments promise, through every read path (`get_object` AND `list_objects`, `get_upload`
//! AND `list_uploads`, ref counts of every chunk involved):
//!
//! * DeleteBucket against PUT and CreateMultipartUpload: an object (or upload) acknowledged in a
//!   bucket whose delete was also acknowledged is lost, invisible under any later bucket of
//!   that name.
//! * Uploads of one part number: one part is kept, whole; the refs of every replaced upload
//!   are released (a leaked ref is a chunk garbage collection never reclaims).
//! * CompleteMultipartUpload against itself, against AbortMultipartUpload and against an
//!   UploadPart: exactly one of two completions or of completion and abort wins; a part that
//!   lands while the upload completes is released with it.
//! * Overwrites and deletes of one key: each version is replaced or deleted exactly once (a
//!   version released twice takes a ref from a chunk another version still uses), and the
//!   listing agrees with `get_object`.
//! * Garbage collection against deduplicated reuse: a chunk record that a commit relies on is
//!   never deleted under it.
//!
//! Every case name contains `racing`, so `cargo test -p sdfbs-metadata --test <backend> racing`
//! runs them (with the two older racing cases of `cases.rs`). A case whose races have two
//! legal outcomes prints one line of how many rounds each won (visible with `--nocapture`), to
//! show that both were reached.

use super::cases_multipart::{part, upload};
use super::util::*;
use sdfbs_metadata::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

/// Delays a racer after the start line: not at all, a few scheduler yields, or a few
/// milliseconds, by `step` (any number; taken modulo the number of steps).
async fn stagger(step: u64) {
    match step % 6 {
        0 => {}
        1 => tokio::task::yield_now().await,
        2 => {
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        }
        3 => tokio::time::sleep(Duration::from_millis(1)).await,
        4 => tokio::time::sleep(Duration::from_millis(2)).await,
        _ => tokio::time::sleep(Duration::from_millis(5)).await,
    }
}

/// Delay step of racer `who` of a crowd in `round`: the crowd starts together in even rounds
/// and spread out in odd ones.
fn crowd_step(round: u64, who: u64) -> u64 {
    if round.is_multiple_of(2) {
        0
    } else {
        who % 4
    }
}

/// Delay steps of the crowd racer `who` and of the lone racer against it in `round`: in two
/// rounds of three the crowd starts at once (together or spread out) and the lone racer at a
/// sweeping offset into it; in every third round the crowd is held back, so the lone racer
/// goes first.
fn steps(round: u64, who: u64) -> (u64, u64) {
    if round % 3 == 2 {
        (4 + who % 2, 0)
    } else {
        (crowd_step(round, who), round)
    }
}

/// A start line for `n` racers.
fn start_line(n: usize) -> Arc<Barrier> {
    Arc::new(Barrier::new(n))
}

/// The current version of `key` as `get_object` answers it, after checking that
/// `list_objects` agrees: listed exactly once, as the same version, when there is a current
/// object; not listed when there is none.
async fn visible(s: &Store, b: &BucketRecord, key: &str) -> Option<ObjectRecord> {
    let current = s.get_object(b, key).await.unwrap();
    let page = s
        .list_objects(b, &query(key, None, None, 1000))
        .await
        .unwrap();
    let listed: Vec<&ObjectRecord> = page.objects.iter().filter(|o| o.key == key).collect();
    match &current {
        Some(o) => {
            assert!(
                !o.delete_marker,
                "no delete markers in an unversioned bucket"
            );
            assert_eq!(
                listed.len(),
                1,
                "`{key}` is current (version {}) so it is listed once: {listed:?}",
                o.version_id
            );
            assert_eq!(
                listed[0].version_id, o.version_id,
                "the listing shows the current version of `{key}`"
            );
        }
        None => assert!(
            listed.is_empty(),
            "get_object has no `{key}` but list_objects shows it: {listed:?}"
        ),
    }
    current
}

/// Every key `list_objects` shows in `b`, in order.
async fn listed_keys(s: &Store, b: &BucketRecord) -> Vec<String> {
    list_all(s, b, "", None, 1000).await.0
}

/// Every upload `list_uploads` shows in `b`, as upload ids, sorted.
async fn listed_uploads(s: &Store, b: &BucketRecord) -> Vec<String> {
    let q = UploadListQuery {
        max_uploads: 10_000,
        ..Default::default()
    };
    let page = s.list_uploads(b, &q).await.unwrap();
    assert!(!page.is_truncated);
    let mut ids: Vec<String> = page.uploads.into_iter().map(|u| u.upload_id).collect();
    ids.sort();
    ids
}

/// Commits `o` as a one-chunk object made of chunk `c` placed on n1 and n2, with no
/// condition: what one racer of a crowd of PUTs does.
async fn commit_one(
    s: &Store,
    b: &BucketRecord,
    o: &ObjectRecord,
    c: ChunkId,
) -> Result<CommitOutcome> {
    s.commit_object(
        b,
        o.clone(),
        manifest(&[c]),
        placements(&[c], &["n1", "n2"]),
        PutCondition::None,
    )
    .await
}

/// DeleteBucket racing PUTs of distinct keys into the bucket. If the delete returned `Ok`, no
/// PUT may have: its object would sit in a deleted bucket, invisible (lost). If the delete was
/// refused (`BucketNotEmpty`), every acknowledged PUT is visible with its ref, and the listing
/// shows exactly those. A PUT refused with `NoSuchBucket` although the delete lost is
/// tolerated (spurious, but nothing acknowledged is lost), as long as it left nothing behind.
pub async fn delete_bucket_racing_commits_hides_nothing(s: Store) {
    const ROUNDS: u64 = 15;
    const COMMITS: u64 = 8;
    let (mut deleted, mut refused_commits) = (0, 0);
    for round in 0..ROUNDS {
        let name = format!("race-{round}");
        let b = new_bucket(&s, &name).await;
        let gate = start_line(COMMITS as usize + 1);
        let commits: Vec<_> = (0..COMMITS)
            .map(|i| {
                let (s, b, gate) = (s.clone(), b.clone(), gate.clone());
                tokio::spawn(async move {
                    let c = chunk(round * 100 + i);
                    let o = object(&format!("k{i}"), CHUNK_SIZE, &format!("e{i}"));
                    gate.wait().await;
                    stagger(steps(round, i).0).await;
                    let r = commit_one(&s, &b, &o, c).await;
                    (o, c, r)
                })
            })
            .collect();
        let deleter = {
            let (s, name, gate) = (s.clone(), name.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                stagger(steps(round, 0).1).await;
                s.delete_bucket(&name).await
            })
        };
        let delete = deleter.await.unwrap();
        let mut results = Vec::new();
        for t in commits {
            results.push(t.await.unwrap());
        }
        match delete {
            Ok(()) => {
                deleted += 1;
                for (o, c, r) in &results {
                    assert!(
                        matches!(r, Err(MetaError::NoSuchBucket(n)) if *n == name),
                        "round {round}: delete_bucket returned Ok, so the PUT of `{}` must have \
                         failed with NoSuchBucket (an acknowledged object in a deleted bucket is \
                         lost), but it returned {r:?}",
                        o.key
                    );
                    assert_eq!(
                        refs(&s, *c).await,
                        0,
                        "round {round}: a refused PUT leaked a ref"
                    );
                }
                assert!(s.get_bucket(&name).await.unwrap().is_none());
                // A bucket re-created under the name shows nothing of the old one.
                let again = new_bucket(&s, &name).await;
                assert!(listed_keys(&s, &again).await.is_empty());
                for (o, _, _) in &results {
                    assert!(s.get_object(&again, &o.key).await.unwrap().is_none());
                }
            }
            Err(MetaError::BucketNotEmpty(n)) => {
                assert_eq!(n, name);
                assert_eq!(s.get_bucket(&name).await.unwrap(), Some(b.clone()));
                let mut acked = Vec::new();
                for (o, c, r) in results {
                    match r {
                        Ok(out) => {
                            assert_eq!(out.replaced, None);
                            let current = visible(&s, &b, &o.key).await;
                            assert_eq!(
                                current.as_ref(),
                                Some(&o),
                                "round {round}: acknowledged PUT of `{}` lost",
                                o.key
                            );
                            assert_eq!(refs(&s, c).await, 1, "round {round}: `{}`", o.key);
                            acked.push(o.key);
                        }
                        Err(MetaError::NoSuchBucket(_)) => {
                            refused_commits += 1;
                            assert!(visible(&s, &b, &o.key).await.is_none());
                            assert_eq!(
                                refs(&s, c).await,
                                0,
                                "round {round}: a refused PUT leaked a ref"
                            );
                        }
                        Err(e) => panic!("round {round}: PUT of `{}` failed with {e:?}", o.key),
                    }
                }
                acked.sort();
                assert_eq!(
                    listed_keys(&s, &b).await,
                    acked,
                    "round {round}: the listing shows exactly the acknowledged PUTs"
                );
            }
            Err(e) => panic!(
                "round {round}: delete_bucket of an existing bucket may only be refused with \
                 BucketNotEmpty, got {e:?}"
            ),
        }
    }
    eprintln!(
        "delete_bucket won {deleted} of {ROUNDS} rounds; {refused_commits} PUTs refused in \
         rounds the delete lost"
    );
}

/// DeleteBucket racing CreateMultipartUpload: the same rule as for PUTs, for uploads (an
/// upload created in a bucket whose delete was acknowledged can never be completed or listed).
pub async fn delete_bucket_racing_uploads_hides_nothing(s: Store) {
    const ROUNDS: u64 = 15;
    const UPLOADS: u64 = 8;
    let (mut deleted, mut refused_uploads) = (0, 0);
    for round in 0..ROUNDS {
        let name = format!("race-{round}");
        let b = new_bucket(&s, &name).await;
        let gate = start_line(UPLOADS as usize + 1);
        let creates: Vec<_> = (0..UPLOADS)
            .map(|i| {
                let (s, b, gate) = (s.clone(), b.clone(), gate.clone());
                tokio::spawn(async move {
                    let up = upload(&format!("k{i}"));
                    gate.wait().await;
                    stagger(steps(round, i).0).await;
                    let r = s.create_upload(&b, up.clone()).await;
                    (up, r)
                })
            })
            .collect();
        let deleter = {
            let (s, name, gate) = (s.clone(), name.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                stagger(steps(round, 0).1).await;
                s.delete_bucket(&name).await
            })
        };
        let delete = deleter.await.unwrap();
        let mut results = Vec::new();
        for t in creates {
            results.push(t.await.unwrap());
        }
        match delete {
            Ok(()) => {
                deleted += 1;
                for (up, r) in &results {
                    assert!(
                        matches!(r, Err(MetaError::NoSuchBucket(n)) if *n == name),
                        "round {round}: delete_bucket returned Ok, so the upload of `{}` must \
                         have failed with NoSuchBucket (an upload created in a deleted bucket \
                         is lost), but it returned {r:?}",
                        up.key
                    );
                }
                assert!(s.get_bucket(&name).await.unwrap().is_none());
                let again = new_bucket(&s, &name).await;
                assert!(listed_uploads(&s, &again).await.is_empty());
                for (up, _) in &results {
                    let r = s.get_upload(&again, &up.key, &up.upload_id).await;
                    assert!(matches!(r, Err(MetaError::NoSuchUpload(_))), "{r:?}");
                }
            }
            Err(MetaError::BucketNotEmpty(n)) => {
                assert_eq!(n, name);
                assert_eq!(s.get_bucket(&name).await.unwrap(), Some(b.clone()));
                let mut acked = Vec::new();
                for (up, r) in results {
                    let found = s.get_upload(&b, &up.key, &up.upload_id).await;
                    match r {
                        Ok(()) => {
                            assert_eq!(
                                found.ok().as_ref(),
                                Some(&up),
                                "round {round}: acknowledged upload of `{}` lost",
                                up.key
                            );
                            acked.push(up.upload_id);
                        }
                        Err(MetaError::NoSuchBucket(_)) => {
                            refused_uploads += 1;
                            assert!(
                                matches!(found, Err(MetaError::NoSuchUpload(_))),
                                "round {round}: a refused upload is there: {found:?}"
                            );
                        }
                        Err(e) => panic!("round {round}: upload of `{}` failed with {e:?}", up.key),
                    }
                }
                acked.sort();
                assert_eq!(
                    listed_uploads(&s, &b).await,
                    acked,
                    "round {round}: list_uploads shows exactly the acknowledged uploads"
                );
            }
            Err(e) => panic!(
                "round {round}: delete_bucket of an existing bucket may only be refused with \
                 BucketNotEmpty, got {e:?}"
            ),
        }
    }
    eprintln!(
        "delete_bucket won {deleted} of {ROUNDS} rounds; {refused_uploads} uploads refused in \
         rounds the delete lost"
    );
}

/// Eight uploads of one part number at once, each with its own chunk: one part is kept,
/// whole, holding the only ref; the chunks of the seven replaced uploads are released. The
/// completed object is made of the kept part's chunk.
pub async fn racing_uploads_of_one_part_number_keep_one(s: Store) {
    const ROUNDS: u64 = 8;
    const RACERS: u64 = 8;
    const NUMBER: u32 = 7;
    let b = new_bucket(&s, "b").await;
    let mut earlier: Vec<ChunkId> = Vec::new();
    for round in 0..ROUNDS {
        let up = upload("k");
        s.create_upload(&b, up.clone()).await.unwrap();
        let gate = start_line(RACERS as usize);
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let (s, b, up, gate) = (s.clone(), b.clone(), up.clone(), gate.clone());
                tokio::spawn(async move {
                    let c = chunk(round * 100 + i);
                    let mut p = part(NUMBER, &[c]);
                    p.etag = format!("etag-{round}-{i}");
                    gate.wait().await;
                    stagger(crowd_step(round, i)).await;
                    let placed = placements(&[c], &["n1", "n2"]);
                    let r = s.put_part(&b, "k", &up.upload_id, p.clone(), placed).await;
                    (p, r)
                })
            })
            .collect();
        let mut racers = Vec::new();
        for t in tasks {
            let (p, r) = t.await.unwrap();
            if let Err(e) = r {
                panic!(
                    "round {round}: upload of part {NUMBER} ({}) failed: {e:?}",
                    p.etag
                );
            }
            racers.push(p);
        }
        let parts = s.list_parts(&b, "k", &up.upload_id, 0, 100).await.unwrap();
        assert_eq!(
            parts.len(),
            1,
            "round {round}: one part number, one part: {parts:?}"
        );
        let kept = parts[0].clone();
        assert!(
            racers.contains(&kept),
            "round {round}: the part kept is one of the uploads, whole: {kept:?}"
        );
        for p in &racers {
            let expected = u64::from(*p == kept);
            assert_eq!(
                refs(&s, p.chunks[0].chunk).await,
                expected,
                "round {round}: chunk of upload {} (kept: {})",
                p.etag,
                kept.etag
            );
        }
        let mut o = object("k", kept.size, &format!("done-{round}"));
        o.parts = vec![PartSummary {
            number: NUMBER,
            size: kept.size,
            etag: kept.etag.clone(),
        }];
        s.complete_upload(&b, &up.upload_id, o.clone(), &[NUMBER], PutCondition::None)
            .await
            .unwrap();
        assert_eq!(visible(&s, &b, "k").await, Some(o.clone()), "round {round}");
        assert_eq!(s.get_manifest(&o.version_id).await.unwrap(), kept.chunks);
        for p in &racers {
            let c = p.chunks[0].chunk;
            assert_eq!(
                refs(&s, c).await,
                u64::from(*p == kept),
                "round {round}: after completion, chunk of upload {}",
                p.etag
            );
            earlier.push(c);
        }
        // The object of the previous round was replaced: its chunk is released too.
        let current = kept.chunks[0].chunk;
        for c in earlier.iter().filter(|c| **c != current) {
            assert_eq!(refs(&s, *c).await, 0, "round {round}: {c:?}");
        }
    }
}

/// The chunks of the upload [`prepared_upload`] makes from `base`: part 1 is `[base]`, part 2
/// is `[base + 1, base + 2]`, part 3 is `[base + 3]`.
fn upload_chunks(base: u64) -> [ChunkId; 4] {
    [
        chunk(base),
        chunk(base + 1),
        chunk(base + 2),
        chunk(base + 3),
    ]
}

/// An upload of `key` with parts 1, 2 and 3 (chunks from [`upload_chunks`]), ready to be
/// completed with parts 1 and 2; returns it and the manifest that completion makes.
async fn prepared_upload(
    s: &Store,
    b: &BucketRecord,
    key: &str,
    base: u64,
) -> (UploadRecord, Vec<ManifestEntry>) {
    let up = upload(key);
    s.create_upload(b, up.clone()).await.unwrap();
    let [c0, c1, c2, c3] = upload_chunks(base);
    for p in [part(1, &[c0]), part(2, &[c1, c2]), part(3, &[c3])] {
        let chunks: Vec<ChunkId> = p.chunks.iter().map(|e| e.chunk).collect();
        s.put_part(b, key, &up.upload_id, p, placements(&chunks, &["n1", "n2"]))
            .await
            .unwrap();
    }
    (up, manifest(&[c0, c1, c2]))
}

/// The object a completion of parts 1 and 2 of a [`prepared_upload`] commits.
fn completed_object(key: &str, tag: &str) -> ObjectRecord {
    let mut o = object(key, 3 * CHUNK_SIZE, &format!("{tag}-2"));
    o.parts = vec![
        PartSummary {
            number: 1,
            size: CHUNK_SIZE,
            etag: "etag-part-1".into(),
        },
        PartSummary {
            number: 2,
            size: 2 * CHUNK_SIZE,
            etag: "etag-part-2".into(),
        },
    ];
    o
}

/// After an upload ended (completed or aborted): `get_upload`, `list_parts` and
/// `list_uploads` no longer know it.
async fn assert_upload_gone(s: &Store, b: &BucketRecord, up: &UploadRecord, what: &str) {
    let r = s.get_upload(b, &up.key, &up.upload_id).await;
    assert!(
        matches!(r, Err(MetaError::NoSuchUpload(_))),
        "{what}: get_upload after the upload ended: {r:?}"
    );
    let r = s.list_parts(b, &up.key, &up.upload_id, 0, 100).await;
    assert!(
        matches!(r, Err(MetaError::NoSuchUpload(_))),
        "{what}: list_parts after the upload ended: {r:?}"
    );
    assert!(
        !listed_uploads(s, b).await.contains(&up.upload_id),
        "{what}: list_uploads still shows the upload"
    );
}

/// Checks that `o` is the current version of its key with `expected` as manifest, one ref per
/// entry, and that part 3 of the upload (not completed) was released.
async fn assert_completed(
    s: &Store,
    b: &BucketRecord,
    o: &ObjectRecord,
    expected: &[ManifestEntry],
    base: u64,
    what: &str,
) {
    assert_eq!(
        visible(s, b, &o.key).await.as_ref(),
        Some(o),
        "{what}: the completed object"
    );
    assert_eq!(
        s.get_manifest(&o.version_id).await.unwrap(),
        expected,
        "{what}: manifest of the completed object"
    );
    let [c0, c1, c2, c3] = upload_chunks(base);
    for c in [c0, c1, c2] {
        assert_eq!(refs(s, c).await, 1, "{what}: chunk of the object {c:?}");
    }
    assert_eq!(
        refs(s, c3).await,
        0,
        "{what}: part 3 was left out, so released"
    );
}

/// CompleteMultipartUpload racing (a) a second completion of the same upload, (b) an abort of
/// it, (c) an upload of a part not in the completed list.
pub async fn complete_racing_complete_and_abort(s: Store) {
    const ROUNDS: u64 = 8;
    let b = new_bucket(&s, "b").await;

    // (a) Two completions: one wins, the other finds no upload; refs are those of one
    // manifest (not added twice, not released by the loser).
    let mut earlier: Vec<u64> = Vec::new();
    for round in 0..ROUNDS {
        let what = format!("complete/complete round {round}");
        let base = 10_000 + round * 10;
        let (up, expected) = prepared_upload(&s, &b, "a", base).await;
        let gate = start_line(2);
        let tasks: Vec<_> = (0..2u64)
            .map(|i| {
                let (s, b, up, gate) = (s.clone(), b.clone(), up.clone(), gate.clone());
                tokio::spawn(async move {
                    let o = completed_object("a", &format!("c{i}"));
                    gate.wait().await;
                    stagger(if i == 0 { round } else { 0 }).await;
                    let r = s
                        .complete_upload(&b, &up.upload_id, o.clone(), &[1, 2], PutCondition::None)
                        .await;
                    (o, r)
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let winners: Vec<&ObjectRecord> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(o, _)| o)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "{what}: exactly one completion wins: {:?}",
            results.iter().map(|(_, r)| r).collect::<Vec<_>>()
        );
        for (_, r) in &results {
            assert!(
                matches!(r, Ok(_) | Err(MetaError::NoSuchUpload(_))),
                "{what}: the losing completion must find no upload: {r:?}"
            );
        }
        assert_completed(&s, &b, winners[0], &expected, base, &what).await;
        assert_upload_gone(&s, &b, &up, &what).await;
        // The object of the previous round was replaced and released.
        for &e in &earlier {
            for c in upload_chunks(e) {
                assert_eq!(refs(&s, c).await, 0, "{what}: earlier version's {c:?}");
            }
        }
        earlier.push(base);
    }

    // (b) Completion against abort: one wins, the other finds no upload.
    let (mut completed, mut aborted) = (0, 0);
    for round in 0..ROUNDS {
        let what = format!("complete/abort round {round}");
        let key = format!("b{round}");
        let base = 20_000 + round * 10;
        let (up, expected) = prepared_upload(&s, &b, &key, base).await;
        let o = completed_object(&key, "c");
        let gate = start_line(2);
        let completer = {
            let (s, b, up, o, gate) = (s.clone(), b.clone(), up.clone(), o.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                stagger(round).await;
                s.complete_upload(&b, &up.upload_id, o, &[1, 2], PutCondition::None)
                    .await
            })
        };
        let aborter = {
            let (s, b, up, gate) = (s.clone(), b.clone(), up.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                stagger(round / 6).await;
                s.abort_upload(&b, &up.key, &up.upload_id).await
            })
        };
        let complete = completer.await.unwrap();
        let abort = aborter.await.unwrap();
        match (&complete, &abort) {
            (Ok(out), Err(MetaError::NoSuchUpload(_))) => {
                completed += 1;
                assert_eq!(out.replaced, None);
                assert_completed(&s, &b, &o, &expected, base, &what).await;
            }
            (Err(MetaError::NoSuchUpload(_)), Ok(())) => {
                aborted += 1;
                assert!(
                    visible(&s, &b, &key).await.is_none(),
                    "{what}: the abort won, so there is no object"
                );
                for c in upload_chunks(base) {
                    assert_eq!(refs(&s, c).await, 0, "{what}: aborted part's {c:?}");
                }
            }
            _ => panic!(
                "{what}: exactly one of completion and abort wins, the other finds no upload: \
                 complete {complete:?}, abort {abort:?}"
            ),
        }
        assert_upload_gone(&s, &b, &up, &what).await;
    }

    // (c) Completion against an upload of part 4, which the completion does not list: the part
    // either finds no upload or lands before the completion, which then releases it.
    let (mut late, mut released) = (0, 0);
    for round in 0..ROUNDS {
        let what = format!("complete/put_part round {round}");
        let key = format!("c{round}");
        let base = 30_000 + round * 10;
        let (up, expected) = prepared_upload(&s, &b, &key, base).await;
        let extra = chunk(base + 9);
        let o = completed_object(&key, "c");
        let gate = start_line(2);
        let completer = {
            let (s, b, up, o, gate) = (s.clone(), b.clone(), up.clone(), o.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                stagger(round).await;
                s.complete_upload(&b, &up.upload_id, o, &[1, 2], PutCondition::None)
                    .await
            })
        };
        let uploader = {
            let (s, b, up, gate) = (s.clone(), b.clone(), up.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                stagger(round / 6).await;
                let placed = placements(&[extra], &["n1", "n2"]);
                s.put_part(&b, &up.key, &up.upload_id, part(4, &[extra]), placed)
                    .await
            })
        };
        let complete = completer.await.unwrap();
        let put = uploader.await.unwrap();
        if let Err(e) = &complete {
            panic!("{what}: an upload of an unlisted part cannot fail the completion: {e:?}");
        }
        match &put {
            Ok(()) => released += 1,
            Err(MetaError::NoSuchUpload(_)) => late += 1,
            Err(e) => panic!("{what}: the part upload may only find no upload: {e:?}"),
        }
        assert_eq!(
            refs(&s, extra).await,
            0,
            "{what}: part 4 (put_part returned {put:?}) holds a ref no object or upload uses"
        );
        assert_completed(&s, &b, &o, &expected, base, &what).await;
        assert_upload_gone(&s, &b, &up, &what).await;
    }
    eprintln!(
        "complete/abort: completion won {completed}, abort won {aborted}; complete/put_part: \
         part landed first {released}, found no upload {late}"
    );
}

/// Version ids of `records`, sorted.
fn version_ids<'a>(records: impl IntoIterator<Item = &'a ObjectRecord>) -> Vec<String> {
    let mut ids: Vec<String> = records.into_iter().map(|o| o.version_id.clone()).collect();
    ids.sort();
    ids
}

/// Sixteen PUTs of one key at once, round after round: one version is current, listed once,
/// and every other version (of this round and the earlier ones) was replaced exactly once and
/// released. A version replaced twice would have its refs released twice.
pub async fn racing_overwrites_release_every_replaced_version(s: Store) {
    const ROUNDS: u64 = 6;
    const WRITERS: u64 = 16;
    let b = new_bucket(&s, "b").await;
    let mut previous: Option<ObjectRecord> = None;
    let mut old_chunks: Vec<ChunkId> = Vec::new();
    for round in 0..ROUNDS {
        let gate = start_line(WRITERS as usize);
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (s, b, gate) = (s.clone(), b.clone(), gate.clone());
                tokio::spawn(async move {
                    let c = chunk(round * 100 + i);
                    let o = object("k", CHUNK_SIZE, &format!("e{round}-{i}"));
                    gate.wait().await;
                    stagger(crowd_step(round, i)).await;
                    let r = commit_one(&s, &b, &o, c).await;
                    (o, c, r)
                })
            })
            .collect();
        let mut written = Vec::new();
        let mut replaced = Vec::new();
        for t in tasks {
            let (o, c, r) = t.await.unwrap();
            match r {
                Ok(out) => replaced.push(out.replaced),
                Err(e) => panic!("round {round}: unconditional PUT failed: {e:?}"),
            }
            written.push((o, c));
        }
        let current = visible(&s, &b, "k")
            .await
            .unwrap_or_else(|| panic!("round {round}: sixteen PUTs and no current version"));
        let Some((_, current_chunk)) = written
            .iter()
            .find(|(o, _)| o.version_id == current.version_id)
        else {
            panic!("round {round}: the current version is none of this round's: {current:?}");
        };
        let current_chunk = *current_chunk;
        assert_eq!(
            written.iter().find(|(o, _)| *o == current).map(|(o, _)| o),
            Some(&current),
            "round {round}: the current version is stored whole"
        );
        assert_eq!(
            listed_keys(&s, &b).await,
            ["k"],
            "round {round}: the key is listed once"
        );
        // The versions replaced are exactly those written (plus the previous round's
        // current one) minus the one now current, each once.
        let first = replaced.iter().filter(|r| r.is_none()).count();
        assert_eq!(
            first,
            usize::from(previous.is_none()),
            "round {round}: only the first PUT of a new key replaces nothing"
        );
        let mut expected: Vec<&ObjectRecord> = written.iter().map(|(o, _)| o).collect();
        expected.extend(previous.iter());
        expected.retain(|o| o.version_id != current.version_id);
        assert_eq!(
            version_ids(replaced.iter().flatten()),
            version_ids(expected),
            "round {round}: every version is replaced exactly once"
        );
        assert_eq!(
            refs(&s, current_chunk).await,
            1,
            "round {round}: current chunk"
        );
        old_chunks.extend(
            written
                .iter()
                .map(|(_, c)| *c)
                .filter(|c| *c != current_chunk),
        );
        for c in &old_chunks {
            assert_eq!(
                refs(&s, *c).await,
                0,
                "round {round}: replaced version's {c:?}"
            );
        }
        old_chunks.push(current_chunk);
        previous = Some(current);
    }
    assert_eq!(s.stats().await.unwrap().objects, 1);
}

/// DeleteObject and PUT of one key at once: afterwards `get_object` and `list_objects` agree,
/// every version written was replaced or deleted exactly once unless it is current, and the
/// only chunk with a ref is the current version's.
pub async fn racing_deletes_and_overwrites_of_one_key(s: Store) {
    const ROUNDS: u64 = 8;
    const WRITERS: u64 = 8;
    const DELETERS: u64 = 8;
    let b = new_bucket(&s, "b").await;
    let mut previous: Option<ObjectRecord> = None;
    let mut all_chunks: Vec<(String, ChunkId)> = Vec::new();
    let (mut present, mut absent) = (0, 0);
    for round in 0..ROUNDS {
        let gate = start_line((WRITERS + DELETERS) as usize);
        let writers: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (s, b, gate) = (s.clone(), b.clone(), gate.clone());
                tokio::spawn(async move {
                    let c = chunk(round * 100 + i);
                    let o = object("k", CHUNK_SIZE, &format!("e{round}-{i}"));
                    gate.wait().await;
                    stagger(crowd_step(round, i)).await;
                    let r = commit_one(&s, &b, &o, c).await;
                    (o, c, r)
                })
            })
            .collect();
        let deleters: Vec<_> = (0..DELETERS)
            .map(|i| {
                let (s, b, gate) = (s.clone(), b.clone(), gate.clone());
                tokio::spawn(async move {
                    gate.wait().await;
                    // Together with the PUTs in one round of four, just after them in
                    // another, and spread over their window (wider each time) in the other
                    // two, so that some deletes come after every PUT even where a PUT takes
                    // much longer than a delete of nothing.
                    match round % 4 {
                        0 => stagger(crowd_step(1, i)).await,
                        1 => {}
                        _ => {
                            let spread = i * (round % 6 + 1) * 2;
                            tokio::time::sleep(Duration::from_millis(spread)).await;
                        }
                    }
                    s.delete_object(&b, "k").await
                })
            })
            .collect();
        let mut written = Vec::new();
        let mut removed = Vec::new();
        for t in writers {
            let (o, c, r) = t.await.unwrap();
            match r {
                Ok(out) => removed.extend(out.replaced),
                Err(e) => panic!("round {round}: unconditional PUT failed: {e:?}"),
            }
            all_chunks.push((o.version_id.clone(), c));
            written.push(o);
        }
        for t in deleters {
            match t.await.unwrap() {
                Ok(gone) => removed.extend(gone),
                Err(e) => panic!("round {round}: delete_object failed: {e:?}"),
            }
        }
        let current = visible(&s, &b, "k").await;
        let listed = listed_keys(&s, &b).await;
        match &current {
            Some(o) => {
                present += 1;
                assert_eq!(listed, ["k"], "round {round}");
                assert!(
                    written.contains(o),
                    "round {round}: the current version is one of this round's, whole: {o:?}"
                );
            }
            None => {
                absent += 1;
                assert!(listed.is_empty(), "round {round}: {listed:?}");
            }
        }
        // Each version that is not current was removed (replaced or deleted) exactly once.
        let mut expected: Vec<&ObjectRecord> = written.iter().collect();
        expected.extend(previous.iter());
        expected.retain(|o| Some(&o.version_id) != current.as_ref().map(|c| &c.version_id));
        assert_eq!(
            version_ids(&removed),
            version_ids(expected),
            "round {round}: every version is replaced or deleted exactly once"
        );
        for (version, c) in &all_chunks {
            let is_current = Some(version) == current.as_ref().map(|o| &o.version_id);
            assert_eq!(
                refs(&s, *c).await,
                u64::from(is_current),
                "round {round}: chunk of version {version} (current: {is_current})"
            );
        }
        assert_eq!(
            s.stats().await.unwrap().objects,
            u64::from(current.is_some()),
            "round {round}: object count"
        );
        previous = current;
    }
    eprintln!("the key was present after {present} rounds, absent after {absent}");
}

/// Garbage collection of an unreferenced chunk racing a PUT that reuses it without a placement
/// (a deduplicated upload relies on the existing record for the replicas). Exactly one wins:
/// either the PUT landed and the record is there with its replicas and one ref, or the record
/// was deleted and the PUT was refused (it cannot reference a chunk nobody knows where to find).
pub async fn gc_delete_racing_reuse_keeps_referenced_chunk(s: Store) {
    const ROUNDS: u64 = 12;
    let b = new_bucket(&s, "b").await;
    let (mut reused, mut collected) = (0, 0);
    for round in 0..ROUNDS {
        let what = format!("round {round}");
        let c = chunk(60_000 + round);
        put(&s, &b, &format!("a{round}"), &[c]).await;
        s.delete_object(&b, &format!("a{round}")).await.unwrap();
        assert_eq!(refs(&s, c).await, 0);
        let key = format!("b{round}");
        let o = object(&key, CHUNK_SIZE, "dedup");
        let gate = start_line(2);
        let committer = {
            let (s, b, o, gate) = (s.clone(), b.clone(), o.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                stagger(round).await;
                s.commit_object(&b, o, manifest(&[c]), vec![], PutCondition::None)
                    .await
            })
        };
        let collector = {
            let (s, gate) = (s.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                stagger(round / 6 + 1).await;
                s.delete_chunk_if_unreferenced(&c).await
            })
        };
        let commit = committer.await.unwrap();
        let delete = collector.await.unwrap();
        let record = s.get_chunk(&c).await.unwrap();
        match (&commit, &delete) {
            (Ok(out), Ok(false)) => {
                reused += 1;
                assert_eq!(out.replaced, None);
                let record = record.unwrap_or_else(|| {
                    panic!("{what}: the PUT reusing the chunk landed, but its record is gone")
                });
                let mut replicas = record.replicas.clone();
                replicas.sort();
                assert_eq!(
                    replicas,
                    ["n1", "n2"],
                    "{what}: replicas of the reused chunk"
                );
                assert_eq!(record.ref_count, 1, "{what}: the reusing object's ref");
                assert_eq!(visible(&s, &b, &key).await, Some(o.clone()), "{what}");
                assert_eq!(s.get_manifest(&o.version_id).await.unwrap(), manifest(&[c]));
            }
            (Err(MetaError::Backend(_)), Ok(true)) => {
                collected += 1;
                assert!(
                    record.is_none(),
                    "{what}: collected, yet the refused PUT left a record: {record:?}"
                );
                assert!(
                    visible(&s, &b, &key).await.is_none(),
                    "{what}: the refused PUT is visible"
                );
            }
            // Both lose: the collection deleted the record, saw the PUT's ref and put the
            // record back, while the PUT, finding no record, was refused. A retry succeeds;
            // nothing acknowledged is lost (the embedded store, one transaction each, never
            // takes this path).
            (Err(MetaError::Backend(_)), Ok(false)) => {
                let record = record.unwrap_or_else(|| {
                    panic!("{what}: the collection kept the chunk, but its record is gone")
                });
                assert!(
                    !record.replicas.is_empty(),
                    "{what}: kept record lost its replicas"
                );
                assert_eq!(
                    record.ref_count, 0,
                    "{what}: the refused PUT's ref is released"
                );
                assert!(
                    visible(&s, &b, &key).await.is_none(),
                    "{what}: the refused PUT is visible"
                );
            }
            _ => panic!(
                "{what}: exactly one of the PUT reusing the chunk and its garbage collection \
                 wins (a PUT is refused, with Backend, only for want of the record): commit \
                 {commit:?}, delete_chunk_if_unreferenced {delete:?}, record now {record:?}"
            ),
        }
    }
    eprintln!("the PUT won {reused} of {ROUNDS} rounds, the collection {collected}");
}
