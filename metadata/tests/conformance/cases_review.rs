//! Cases added by a review of the Cassandra backend. Each one states a promise of the trait
//! (or of S3) that a backend made of several statements can break, and checks it through the
//! trait only.
//!
//! A gateway that stops in the middle of an operation is simulated by dropping the operation's
//! future (`tokio::time::timeout`): that is what a crash does, and also what hyper does to a
//! request whose client hung up. The cases then wait a moment (so that a backend which finishes
//! queued work on its own, like the embedded writer thread, has done so) and check that the
//! store is in a state some ordinary request can get out of.

use super::cases_multipart::{part, upload};
use super::util::*;
use sdfbs_metadata::*;
use std::time::Duration;

/// The current version of `key` per `get_object`, and whether `list_objects` lists it.
async fn current_and_listed(
    s: &Store,
    b: &BucketRecord,
    key: &str,
) -> (Option<ObjectRecord>, bool) {
    let current = s.get_object(b, key).await.unwrap();
    let page = s
        .list_objects(b, &query(key, None, None, 1000))
        .await
        .unwrap();
    let listed = page.objects.iter().any(|o| o.key == key);
    (current, listed)
}

/// A PUT of a key racing a PUT and a DELETE of the same key by another client (a lock file, a
/// "latest" pointer). Whatever the interleaving, once everything returned, `get_object` and
/// `list_objects` must agree, and an object that is current must keep its bucket from being
/// deleted.
///
/// Cassandra: the commit condition is `IF head = <read> AND fenced = null`. With `<read>` =
/// null, head can go null -> v1 -> null (the other client's PUT and DELETE) between the read
/// and the batch, and the batch still applies, with a sequence number computed before the
/// DELETE's: the listing row (written `USING TIMESTAMP seq`) is then shadowed by the DELETE's
/// row tombstone, so the object is current but never listed, and DeleteBucket, finding no row,
/// deletes the bucket under it.
pub async fn review_put_racing_put_and_delete_of_one_key_is_listed(s: Store) {
    const ROUNDS: u64 = 300;
    const BIG: u64 = 64;
    let b = new_bucket(&s, "b").await;
    let mut hidden: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let key = format!("k{round:04}");
        // The slow PUT: many chunks, so the other client's PUT lands while it writes them.
        let slow = {
            let (s, b, key) = (s.clone(), b.clone(), key.clone());
            tokio::spawn(async move {
                let chunks: Vec<ChunkId> = (0..BIG).map(|i| chunk(round * 1000 + i)).collect();
                let o = object(&key, CHUNK_SIZE * BIG, "slow");
                let r = s
                    .commit_object(
                        &b,
                        o.clone(),
                        manifest(&chunks),
                        placements(&chunks, &["n1", "n2"]),
                        PutCondition::None,
                    )
                    .await;
                (o, r)
            })
        };
        let other = {
            let (s, b, key) = (s.clone(), b.clone(), key.clone());
            tokio::spawn(async move {
                let c = chunk(round * 1000 + 999);
                let o = object(&key, CHUNK_SIZE, "fast");
                s.commit_object(
                    &b,
                    o,
                    manifest(&[c]),
                    placements(&[c], &["n1", "n2"]),
                    PutCondition::None,
                )
                .await
                .unwrap();
                // Sweep the DELETE over the slow PUT's commit, 0 to 30 ms in 0.1 ms steps.
                tokio::time::sleep(Duration::from_micros((round % 300) * 100)).await;
                s.delete_object(&b, &key).await.unwrap();
            })
        };
        let (o, r) = slow.await.unwrap();
        other.await.unwrap();
        r.unwrap_or_else(|e| panic!("round {round}: unconditional PUT failed: {e:?}"));
        let (current, listed) = current_and_listed(&s, &b, &key).await;
        match current {
            Some(c) => {
                assert_eq!(c, o, "round {round}: only the slow PUT can be current");
                if !listed {
                    hidden.push(key.clone());
                }
            }
            None => assert!(!listed, "round {round}: `{key}` is listed but not current"),
        }
    }
    if hidden.is_empty() {
        return;
    }
    // Show the consequence: delete every key the listing shows (as a client emptying the
    // bucket does), then DeleteBucket.
    let listed = list_all(&s, &b, "", None, 1000).await.0;
    for key in &listed {
        s.delete_object(&b, key).await.unwrap();
    }
    let delete = s.delete_bucket(&b.name).await;
    panic!(
        "{} of {ROUNDS} acknowledged PUTs are current (get_object finds them) but not listed: \
         {:?}; after deleting the {} listed keys, delete_bucket returned {delete:?} (Ok means \
         the bucket was deleted while holding them: acknowledged objects lost)",
        hidden.len(),
        hidden,
        listed.len()
    );
}

/// An upload with `parts` parts of `chunks` chunks each, every chunk placed.
async fn upload_with_parts(
    s: &Store,
    b: &BucketRecord,
    key: &str,
    base: u64,
    parts: u32,
    chunks: u64,
) -> UploadRecord {
    let up = upload(key);
    s.create_upload(b, up.clone()).await.unwrap();
    for n in 1..=parts {
        let ids: Vec<ChunkId> = (0..chunks)
            .map(|i| chunk(base + u64::from(n) * 100 + i))
            .collect();
        s.put_part(
            b,
            key,
            &up.upload_id,
            part(n, &ids),
            placements(&ids, &["n1", "n2"]),
        )
        .await
        .unwrap();
    }
    up
}

/// Delays after which the operation under test is dropped, in microseconds: from before its
/// first statement to well after its last.
const CUTS_US: [u64; 14] = [
    300, 700, 1_000, 1_500, 2_000, 3_000, 4_000, 6_000, 8_000, 12_000, 16_000, 25_000, 40_000,
    80_000,
];

/// AbortMultipartUpload cut short (the gateway died, or the client hung up and hyper dropped
/// the request). The client retries the abort, as S3 clients do: afterwards the upload must be
/// gone from every read path, and the bucket must be deletable once its last upload is gone.
///
/// Cassandra: the abort moves `state` to `aborting` by an LWT, then releases the parts and
/// deletes the rows. Cut after the LWT, the upload stays `aborting` with its `uploads` row:
/// every later abort (and completion, and part upload) is refused with NoSuchUpload because
/// the state is not `open`, ListMultipartUploads shows the upload forever, and DeleteBucket
/// answers BucketNotEmpty forever.
pub async fn review_abort_cut_short_can_be_retried(s: Store) {
    let mut stuck = Vec::new();
    for (i, cut) in CUTS_US.iter().enumerate() {
        let b = new_bucket(&s, &format!("abort-{i}")).await;
        let up = upload_with_parts(&s, &b, "k", 10_000 * i as u64, 8, 4).await;
        let first = tokio::time::timeout(
            Duration::from_micros(*cut),
            s.abort_upload(&b, "k", &up.upload_id),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let retry = s.abort_upload(&b, "k", &up.upload_id).await;
        assert!(
            matches!(retry, Ok(()) | Err(MetaError::NoSuchUpload(_))),
            "cut at {cut} us: retried abort: {retry:?}"
        );
        let q = UploadListQuery {
            max_uploads: 1000,
            ..Default::default()
        };
        let listed = s.list_uploads(&b, &q).await.unwrap().uploads.len();
        let get = s.get_upload(&b, "k", &up.upload_id).await;
        let delete = s.delete_bucket(&b.name).await;
        if listed != 0 || get.is_ok() || delete.is_err() {
            stuck.push(format!(
                "cut at {cut} us (first abort {}): retried abort {retry:?}, list_uploads shows \
                 {listed}, get_upload {}, delete_bucket {delete:?}",
                if first.is_ok() { "finished" } else { "dropped" },
                if get.is_ok() {
                    "finds it"
                } else {
                    "NoSuchUpload"
                },
            ));
        }
    }
    assert!(
        stuck.is_empty(),
        "an abort cut short leaves an upload no request can remove:\n{}",
        stuck.join("\n")
    );
}

/// CompleteMultipartUpload cut short. The client retries the completion: if the first one
/// did not commit the object, the retry must (the parts are still there), or an abort must
/// remove the upload; either way the upload disappears from listings and the bucket can be
/// deleted once emptied.
///
/// Cassandra: cut after the `open` -> `completing` LWT, the upload is `completing` for good:
/// the retried completion and any abort get NoSuchUpload, the object is never committed (the
/// client's whole upload is lost), the upload is listed forever and the bucket can never be
/// deleted.
pub async fn review_complete_cut_short_can_be_retried(s: Store) {
    let mut stuck = Vec::new();
    for (i, cut) in CUTS_US.iter().enumerate() {
        let b = new_bucket(&s, &format!("complete-{i}")).await;
        let up = upload_with_parts(&s, &b, "k", 10_000 * i as u64, 8, 4).await;
        let numbers: Vec<u32> = (1..=8).collect();
        let object_of = |tag: &str| {
            let mut o = object("k", 32 * CHUNK_SIZE, &format!("{tag}-8"));
            o.parts = numbers
                .iter()
                .map(|n| PartSummary {
                    number: *n,
                    size: 4 * CHUNK_SIZE,
                    etag: format!("etag-part-{n}"),
                })
                .collect();
            o
        };
        let o = object_of("first");
        let first = tokio::time::timeout(
            Duration::from_micros(*cut),
            s.complete_upload(&b, &up.upload_id, o.clone(), &numbers, PutCondition::None),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let committed = s
            .get_object(&b, "k")
            .await
            .unwrap()
            .is_some_and(|c| c.version_id == o.version_id);
        let retry = s
            .complete_upload(
                &b,
                &up.upload_id,
                object_of("retry"),
                &numbers,
                PutCondition::None,
            )
            .await;
        let completed = committed || retry.is_ok();
        let abort = s.abort_upload(&b, "k", &up.upload_id).await;
        let q = UploadListQuery {
            max_uploads: 1000,
            ..Default::default()
        };
        let listed = s.list_uploads(&b, &q).await.unwrap().uploads.len();
        s.delete_object(&b, "k").await.unwrap();
        let delete = s.delete_bucket(&b.name).await;
        if !completed || listed != 0 || delete.is_err() {
            stuck.push(format!(
                "cut at {cut} us (first completion {}): object committed by it: {committed}, \
                 retried completion {:?}, abort {abort:?}, list_uploads shows {listed}, \
                 delete_bucket {delete:?}",
                if first.is_ok() { "finished" } else { "dropped" },
                retry.map(|_| "Ok"),
            ));
        }
    }
    assert!(
        stuck.is_empty(),
        "a completion cut short leaves an upload that can neither be completed nor removed:\n{}",
        stuck.join("\n")
    );
}

/// DeleteBucket cut short (gateway died, client hung up). If the bucket is still there,
/// PUTs into it must work again, at the latest once the delete's mark went stale.
///
/// Cassandra: DeleteBucket fences every key whose listing row is pending and has no current
/// version (`fenced = true`), then deletes the bucket row. Cut between the two, the bucket
/// stays, and the fenced keys refuse every later PUT with NoSuchBucket, for good (only another
/// DeleteBucket that finds the bucket not empty lifts them). A PUT cut short between its
/// pending mark and its commit leaves such a row; deleting the committed keys makes the bucket
/// look empty.
pub async fn review_delete_bucket_cut_short_leaves_keys_writable(s: Store) {
    const BUCKETS: u64 = 10;
    const PUTS: u64 = 40;
    let mut survivors = Vec::new();
    for i in 0..BUCKETS {
        let b = new_bucket(&s, &format!("cut-{i}")).await;
        let mut keys = Vec::new();
        // PUTs cut at many points: some leave nothing, some commit, and (on a backend with a
        // listing index marked before the commit) some leave a pending row only.
        for j in 0..PUTS {
            let key = format!("k{j:03}");
            let c = chunk(i * 1000 + j);
            let o = object(&key, CHUNK_SIZE, "cut");
            let _ = tokio::time::timeout(
                Duration::from_micros(800 + j * 200),
                s.commit_object(
                    &b,
                    o,
                    manifest(&[c]),
                    placements(&[c], &["n1", "n2"]),
                    PutCondition::None,
                ),
            )
            .await;
            keys.push(key);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The client empties the bucket, then deletes it; the delete is cut short.
        for key in &keys {
            s.delete_object(&b, key).await.unwrap();
        }
        let _ = tokio::time::timeout(
            Duration::from_micros(2_000 + i * 2_500),
            s.delete_bucket(&b.name),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if s.get_bucket(&b.name).await.unwrap().is_some() {
            survivors.push((b, keys));
        }
    }
    // Let any deleting mark go stale (30 s on Cassandra), then PUT every key again.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let mut refused = Vec::new();
    for (b, keys) in &survivors {
        // (A backend that finishes dropped work on its own may have deleted it meanwhile.)
        if s.get_bucket(&b.name).await.unwrap().as_ref() != Some(b) {
            continue;
        }
        for (j, key) in keys.iter().enumerate() {
            let c = chunk(900_000 + j as u64);
            let o = object(key, CHUNK_SIZE, "after");
            let r = s
                .commit_object(
                    b,
                    o,
                    manifest(&[c]),
                    placements(&[c], &["n1", "n2"]),
                    PutCondition::None,
                )
                .await;
            if let Err(e) = r {
                refused.push(format!("bucket {} key {key}: {e:?}", b.name));
            }
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {BUCKETS} buckets survived a DeleteBucket cut short; 31 s later these PUTs into \
         them are still refused:\n{}",
        survivors.len(),
        refused.join("\n")
    );
}

/// A bucket deleted and created again under the same name is a new bucket: reads of a key go to
/// the new one, never to rows of the old (a backend that remembers name -> id to save a round
/// trip must notice the new id), and a deleted bucket is gone for every read.
pub async fn review_reads_follow_a_recreated_bucket(s: Store) {
    let old = new_bucket(&s, "again").await;
    put(&s, &old, "k", &[chunk(1)]).await;
    for _ in 0..2 {
        // Read twice, so a backend that remembers the bucket's id has done so.
        let (b, o, _) = s
            .get_object_for_read("again", "k", 4)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (b.id.as_str(), o.unwrap().etag.as_str()),
            (old.id.as_str(), "etag-k")
        );
    }
    s.delete_object(&old, "k").await.unwrap();
    s.delete_bucket("again").await.unwrap();
    assert!(s
        .get_object_for_read("again", "k", 4)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .get_bucket_and_object("again", "k")
        .await
        .unwrap()
        .is_none());

    let new = new_bucket(&s, "again").await;
    assert_ne!(new.id, old.id);
    // The key does not exist in the new bucket yet.
    let (b, o, _) = s
        .get_object_for_read("again", "k", 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b.id.as_str(), o), (new.id.as_str(), None));
    let o = object("k", CHUNK_SIZE, "etag-new");
    s.commit_object(
        &new,
        o,
        manifest(&[chunk(2)]),
        placements(&[chunk(2)], &["n1"]),
        PutCondition::None,
    )
    .await
    .unwrap();
    let (b, o, m) = s
        .get_object_for_read("again", "k", 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.id, new.id);
    assert_eq!(o.unwrap().etag, "etag-new");
    assert_eq!(m.unwrap().0, manifest(&[chunk(2)]));
    let (b, o) = s
        .get_bucket_and_object("again", "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b.id, o.unwrap().etag), (new.id, "etag-new".to_string()));
}
