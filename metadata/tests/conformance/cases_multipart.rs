//! Multipart uploads: parts, stitching order, replacement, listing, abort, errors.

use super::util::*;
use sdfbs_metadata::*;

pub fn upload(key: &str) -> UploadRecord {
    UploadRecord {
        upload_id: uid(),
        key: key.to_string(),
        initiated: now_millis(),
        owner: "AKOWNER".into(),
        content_type: Some("video/mp4".into()),
        headers: Default::default(),
        user_metadata: [("a".to_string(), "b".to_string())].into(),
        checksum_algorithm: Some("CRC32".into()),
        checksum_type: Some("COMPOSITE".into()),
    }
}

pub fn part(number: u32, chunks: &[ChunkId]) -> PartRecord {
    PartRecord {
        number,
        size: CHUNK_SIZE * chunks.len() as u64,
        etag: format!("etag-part-{number}"),
        last_modified: now_millis(),
        checksums: Default::default(),
        chunks: manifest(chunks),
    }
}

async fn put_part(s: &Store, b: &BucketRecord, up: &UploadRecord, p: PartRecord) {
    let chunks: Vec<ChunkId> = p.chunks.iter().map(|e| e.chunk).collect();
    s.put_part(
        b,
        &up.key,
        &up.upload_id,
        p,
        placements(&chunks, &["n1", "n2"]),
    )
    .await
    .unwrap();
}

pub async fn multipart_stitches_in_given_order(s: Store) {
    let b = new_bucket(&s, "b").await;
    let up = upload("big");
    s.create_upload(&b, up.clone()).await.unwrap();
    assert_eq!(s.get_upload(&b, "big", &up.upload_id).await.unwrap(), up);
    // Parts arrive out of order; part 4 is uploaded but not completed.
    put_part(&s, &b, &up, part(3, &[chunk(30), chunk(31)])).await;
    put_part(&s, &b, &up, part(1, &[chunk(10)])).await;
    put_part(&s, &b, &up, part(2, &[chunk(20), chunk(21), chunk(22)])).await;
    put_part(&s, &b, &up, part(4, &[chunk(40)])).await;
    let mut o = object("big", 6 * CHUNK_SIZE, "abc-3");
    o.parts = (1..=3)
        .map(|n| PartSummary {
            number: n,
            size: CHUNK_SIZE,
            etag: format!("etag-part-{n}"),
        })
        .collect();
    let out = s
        .complete_upload(&b, &up.upload_id, o.clone(), &[1, 2, 3], PutCondition::None)
        .await
        .unwrap();
    assert_eq!(out.replaced, None);
    assert_eq!(s.get_object(&b, "big").await.unwrap(), Some(o.clone()));
    let expected = [
        chunk(10),
        chunk(20),
        chunk(21),
        chunk(22),
        chunk(30),
        chunk(31),
    ];
    assert_eq!(
        s.get_manifest(&o.version_id).await.unwrap(),
        manifest(&expected)
    );
    for c in expected {
        assert_eq!(refs(&s, c).await, 1, "{c:?}");
    }
    assert_eq!(
        refs(&s, chunk(40)).await,
        0,
        "the part left out is released"
    );
    let r = s.get_upload(&b, "big", &up.upload_id).await;
    assert!(matches!(r, Err(MetaError::NoSuchUpload(_))), "{r:?}");
    let page = s
        .list_uploads(
            &b,
            &UploadListQuery {
                max_uploads: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(page.uploads.is_empty());
    // Overwriting the completed object releases its refs like any overwrite.
    put(&s, &b, "big", &[chunk(99)]).await;
    for c in expected {
        assert_eq!(refs(&s, c).await, 0);
    }
}

pub async fn multipart_part_replacement_and_listing(s: Store) {
    let b = new_bucket(&s, "b").await;
    let up = upload("k");
    s.create_upload(&b, up.clone()).await.unwrap();
    for n in 1..=5 {
        put_part(&s, &b, &up, part(n, &[chunk(u64::from(n))])).await;
    }
    // Re-upload of part 2: replaces it, releases the old chunk.
    let mut p2 = part(2, &[chunk(200), chunk(201)]);
    p2.etag = "second".into();
    put_part(&s, &b, &up, p2.clone()).await;
    assert_eq!(refs(&s, chunk(2)).await, 0);
    assert_eq!(refs(&s, chunk(200)).await, 1);
    let parts = s.list_parts(&b, "k", &up.upload_id, 0, 100).await.unwrap();
    assert_eq!(
        parts.iter().map(|p| p.number).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(parts[1], p2);
    let parts = s.list_parts(&b, "k", &up.upload_id, 2, 2).await.unwrap();
    assert_eq!(parts.iter().map(|p| p.number).collect::<Vec<_>>(), [3, 4]);
    let parts = s.list_parts(&b, "k", &up.upload_id, 5, 2).await.unwrap();
    assert!(parts.is_empty());
    let r = s.list_parts(&b, "k", "no-such-upload", 0, 10).await;
    assert!(matches!(r, Err(MetaError::NoSuchUpload(_))), "{r:?}");
    let r = s
        .put_part(
            &b,
            "k",
            "no-such-upload",
            part(1, &[chunk(1)]),
            placements(&[chunk(1)], &["n1"]),
        )
        .await;
    assert!(matches!(r, Err(MetaError::NoSuchUpload(_))), "{r:?}");
    let r = s.get_upload(&b, "other-key", &up.upload_id).await;
    assert!(
        matches!(r, Err(MetaError::NoSuchUpload(_))),
        "upload id under another key: {r:?}"
    );
}

pub async fn multipart_abort_releases_refs(s: Store) {
    let b = new_bucket(&s, "b").await;
    let up = upload("k");
    s.create_upload(&b, up.clone()).await.unwrap();
    put_part(&s, &b, &up, part(1, &[chunk(1), chunk(2)])).await;
    put_part(&s, &b, &up, part(2, &[chunk(2)])).await;
    assert_eq!(refs(&s, chunk(2)).await, 2);
    s.abort_upload(&b, "k", &up.upload_id).await.unwrap();
    assert_eq!(refs(&s, chunk(1)).await, 0);
    assert_eq!(refs(&s, chunk(2)).await, 0);
    let r = s.abort_upload(&b, "k", &up.upload_id).await;
    assert!(matches!(r, Err(MetaError::NoSuchUpload(_))), "{r:?}");
    let r = s
        .complete_upload(
            &b,
            &up.upload_id,
            object("k", 0, "e"),
            &[1],
            PutCondition::None,
        )
        .await;
    assert!(matches!(r, Err(MetaError::NoSuchUpload(_))), "{r:?}");
    assert!(s.get_object(&b, "k").await.unwrap().is_none());
}

pub async fn multipart_list_uploads(s: Store) {
    let b = new_bucket(&s, "b").await;
    let mut ups = Vec::new();
    for key in ["a/1", "a/2", "b", "b", "c/x/y", "d"] {
        let up = upload(key);
        s.create_upload(&b, up.clone()).await.unwrap();
        ups.push(up);
    }
    let q = |prefix: &str, delim: Option<&str>, km: Option<&str>, um: Option<&str>, max| {
        UploadListQuery {
            prefix: prefix.into(),
            delimiter: delim.map(Into::into),
            key_marker: km.map(Into::into),
            upload_id_marker: um.map(Into::into),
            max_uploads: max,
        }
    };
    let all = s
        .list_uploads(&b, &q("", None, None, None, 100))
        .await
        .unwrap();
    let keys: Vec<&str> = all.uploads.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(keys, ["a/1", "a/2", "b", "b", "c/x/y", "d"]);
    assert!(!all.is_truncated);
    // The two uploads of "b" are ordered by upload id.
    let b_ids: Vec<&str> = all.uploads[2..4]
        .iter()
        .map(|u| u.upload_id.as_str())
        .collect();
    let mut sorted = b_ids.clone();
    sorted.sort();
    assert_eq!(b_ids, sorted);
    let folded = s
        .list_uploads(&b, &q("", Some("/"), None, None, 100))
        .await
        .unwrap();
    assert_eq!(folded.common_prefixes, ["a/", "c/"]);
    assert_eq!(
        folded
            .uploads
            .iter()
            .map(|u| u.key.as_str())
            .collect::<Vec<_>>(),
        ["b", "b", "d"]
    );
    let pref = s
        .list_uploads(&b, &q("c/", Some("/"), None, None, 100))
        .await
        .unwrap();
    assert_eq!(pref.common_prefixes, ["c/x/"]);
    // Paging with (key, upload id) markers.
    let p1 = s
        .list_uploads(&b, &q("", None, None, None, 3))
        .await
        .unwrap();
    assert!(p1.is_truncated);
    assert_eq!(p1.next_key_marker.as_deref(), Some("b"));
    assert_eq!(p1.next_upload_id_marker.as_deref(), Some(b_ids[0]));
    let p2 = s
        .list_uploads(
            &b,
            &q(
                "",
                None,
                p1.next_key_marker.as_deref(),
                p1.next_upload_id_marker.as_deref(),
                3,
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        p2.uploads
            .iter()
            .map(|u| u.upload_id.as_str())
            .collect::<Vec<_>>()[0],
        b_ids[1]
    );
    assert_eq!(p2.uploads.len(), 3);
    assert!(!p2.is_truncated);
    // Markers beyond the prefix give an empty page.
    let none = s
        .list_uploads(&b, &q("a/", None, Some("b"), None, 100))
        .await
        .unwrap();
    assert!(none.uploads.is_empty() && !none.is_truncated);
    // A key marker alone skips every upload of that key.
    let p3 = s
        .list_uploads(&b, &q("", None, Some("b"), None, 100))
        .await
        .unwrap();
    assert_eq!(
        p3.uploads
            .iter()
            .map(|u| u.key.as_str())
            .collect::<Vec<_>>(),
        ["c/x/y", "d"]
    );
}

pub async fn multipart_complete_errors(s: Store) {
    let b = new_bucket(&s, "b").await;
    let up = upload("k");
    s.create_upload(&b, up.clone()).await.unwrap();
    put_part(&s, &b, &up, part(1, &[chunk(1)])).await;
    let r = s
        .complete_upload(
            &b,
            &up.upload_id,
            object("k", CHUNK_SIZE, "e-2"),
            &[1, 2],
            PutCondition::None,
        )
        .await;
    assert!(matches!(r, Err(MetaError::InvalidPart(2))), "{r:?}");
    // The failed complete changed nothing: the upload and its part are still there.
    assert_eq!(
        s.list_parts(&b, "k", &up.upload_id, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(refs(&s, chunk(1)).await, 1);
    // A conditional complete whose condition fails leaves the upload in place too.
    put(&s, &b, "k", &[chunk(50)]).await;
    let r = s
        .complete_upload(
            &b,
            &up.upload_id,
            object("k", CHUNK_SIZE, "e-1"),
            &[1],
            PutCondition::IfNoneMatchStar,
        )
        .await;
    assert!(matches!(r, Err(MetaError::PreconditionFailed)), "{r:?}");
    assert_eq!(s.get_upload(&b, "k", &up.upload_id).await.unwrap(), up);
    let o = object("k", CHUNK_SIZE, "e-1");
    let out = s
        .complete_upload(
            &b,
            &up.upload_id,
            o.clone(),
            &[1],
            PutCondition::IfMatch("etag-k".into()),
        )
        .await
        .unwrap();
    assert_eq!(out.replaced.unwrap().etag, "etag-k");
    assert_eq!(refs(&s, chunk(50)).await, 0);
    assert_eq!(refs(&s, chunk(1)).await, 1);
    assert_eq!(s.get_object(&b, "k").await.unwrap(), Some(o));
}
