//! Buckets, objects, conditional commits, concurrency, nodes, keys, leases, settings, stats.

use super::util::*;
use sdfbs_metadata::*;
use std::time::Duration;

pub async fn bucket_create_get_list_delete(s: Store) {
    assert!(s.get_bucket("alpha").await.unwrap().is_none());
    let b = new_bucket(&s, "beta").await;
    let a = new_bucket(&s, "alpha").await;
    assert_eq!(s.get_bucket("beta").await.unwrap(), Some(b.clone()));
    let names: Vec<String> = s
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    let again = bucket("alpha");
    assert!(
        matches!(s.create_bucket(again).await, Err(MetaError::BucketAlreadyExists(n)) if n == "alpha")
    );
    s.delete_bucket("alpha").await.unwrap();
    assert!(s.get_bucket("alpha").await.unwrap().is_none());
    assert!(matches!(
        s.delete_bucket("alpha").await,
        Err(MetaError::NoSuchBucket(_))
    ));
    // A re-created bucket gets a new id, and nothing of the old one shows through.
    let a2 = new_bucket(&s, "alpha").await;
    assert_ne!(a2.id, a.id);
    assert_eq!(s.get_bucket("alpha").await.unwrap(), Some(a2));
}

pub async fn bucket_racing_creates_one_winner(s: Store) {
    for round in 0..5 {
        let name = format!("race-{round}");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                let b = bucket(&name);
                tokio::spawn(async move { (b.id.clone(), s.create_bucket(b).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (id, Ok(())) => winners.push(id),
                (_, Err(MetaError::BucketAlreadyExists(n))) => assert_eq!(n, name),
                (_, Err(e)) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one create of {name} wins");
        assert_eq!(s.get_bucket(&name).await.unwrap().unwrap().id, winners[0]);
    }
}

pub async fn bucket_delete_refused_while_not_empty(s: Store) {
    let b = new_bucket(&s, "full").await;
    put(&s, &b, "k", &[chunk(1)]).await;
    assert!(matches!(
        s.delete_bucket("full").await,
        Err(MetaError::BucketNotEmpty(_))
    ));
    s.delete_object(&b, "k").await.unwrap();
    let up = UploadRecord {
        upload_id: uid(),
        key: "mp".into(),
        initiated: now_millis(),
        owner: "AKOWNER".into(),
        content_type: None,
        headers: Default::default(),
        user_metadata: Default::default(),
        checksum_algorithm: None,
        checksum_type: None,
    };
    s.create_upload(&b, up.clone()).await.unwrap();
    assert!(matches!(
        s.delete_bucket("full").await,
        Err(MetaError::BucketNotEmpty(_))
    ));
    s.abort_upload(&b, "mp", &up.upload_id).await.unwrap();
    s.delete_bucket("full").await.unwrap();
    assert!(s.list_buckets().await.unwrap().is_empty());
}

pub async fn bucket_versioning_state(s: Store) {
    new_bucket(&s, "v").await;
    s.set_bucket_versioning("v", VersioningState::Enabled)
        .await
        .unwrap();
    assert_eq!(
        s.get_bucket("v").await.unwrap().unwrap().versioning,
        VersioningState::Enabled
    );
    s.set_bucket_versioning("v", VersioningState::Suspended)
        .await
        .unwrap();
    assert_eq!(
        s.get_bucket("v").await.unwrap().unwrap().versioning,
        VersioningState::Suspended
    );
    assert!(matches!(
        s.set_bucket_versioning("nope", VersioningState::Enabled)
            .await,
        Err(MetaError::NoSuchBucket(_))
    ));
}

pub async fn commit_get_and_manifest(s: Store) {
    let b = new_bucket(&s, "b").await;
    assert!(s.get_object(&b, "k").await.unwrap().is_none());
    let chunks = [chunk(1), chunk(2), chunk(1), chunk(3)];
    let mut o = object("dir/k", 3 * CHUNK_SIZE + 5, "abc");
    o.parts = vec![PartSummary {
        number: 1,
        size: 5,
        etag: "p1".into(),
    }];
    o.checksums.insert("CRC32".into(), "AAAAAA==".into());
    o.checksum_type = Some("FULL_OBJECT".into());
    let mut m = manifest(&chunks);
    m[3].size = 5;
    let mut pl = placements(&[chunk(1), chunk(2), chunk(3)], &["n1", "n2"]);
    pl[2].size = 5;
    let out = s
        .commit_object(&b, o.clone(), m.clone(), pl, PutCondition::None)
        .await
        .unwrap();
    assert_eq!(out.replaced, None);
    assert_eq!(s.get_object(&b, "dir/k").await.unwrap(), Some(o.clone()));
    assert_eq!(s.get_manifest(&o.version_id).await.unwrap(), m);
    // One ref per manifest entry: chunk 1 is used twice.
    assert_eq!(refs(&s, chunk(1)).await, 2);
    assert_eq!(refs(&s, chunk(2)).await, 1);
    let c = s.get_chunk(&chunk(2)).await.unwrap().unwrap();
    assert_eq!(c.replicas, ["n1", "n2"]);
    assert_eq!(c.size, CHUNK_SIZE);
    assert_eq!(c.unreferenced_since, 0);
    // An empty object has an empty manifest.
    let e = object("empty", 0, "d41d8cd98f00b204e9800998ecf8427e");
    s.commit_object(&b, e.clone(), vec![], vec![], PutCondition::None)
        .await
        .unwrap();
    assert_eq!(s.get_manifest(&e.version_id).await.unwrap(), vec![]);
    assert_eq!(s.get_object(&b, "empty").await.unwrap(), Some(e));
}

/// The combined lookups of a GET (`get_bucket_and_object`, `get_manifest_for_read`) answer
/// exactly what the separate calls answer.
/// A chunk record as a read uses it: without the ref count, which `get_manifest_for_read` may
/// leave unfilled (see its doc).
fn for_read(record: Option<ChunkRecord>) -> Option<ChunkRecord> {
    record.map(|r| ChunkRecord {
        ref_count: 0,
        unreferenced_since: 0,
        ..r
    })
}

pub async fn reads_for_get_match_separate_calls(s: Store) {
    let b = new_bucket(&s, "rb").await;
    assert!(s
        .get_bucket_and_object("nope", "k")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.get_bucket_and_object("rb", "k").await.unwrap(),
        Some((b.clone(), None))
    );
    let o = put(&s, &b, "k", &[chunk(7), chunk(8), chunk(7)]).await;
    let (got_b, got_o) = s.get_bucket_and_object("rb", "k").await.unwrap().unwrap();
    assert_eq!(got_b, s.get_bucket("rb").await.unwrap().unwrap());
    assert_eq!(got_o, Some(o.clone()));

    let m = s.get_manifest(&o.version_id).await.unwrap();
    for wanted in [0, 2, 3, 10] {
        let (manifest, records) = s
            .get_manifest_for_read(&o.version_id, wanted)
            .await
            .unwrap();
        assert_eq!(manifest, m);
        assert_eq!(records.len(), wanted.min(m.len()));
        for (entry, record) in m.iter().zip(&records) {
            assert_eq!(
                for_read(record.clone()),
                for_read(s.get_chunk(&entry.chunk).await.unwrap())
            );
            assert!(record.is_some());
            assert_eq!(
                for_read(s.get_chunk_location(&entry.chunk).await.unwrap()),
                for_read(record.clone())
            );
        }
    }
    assert_eq!(s.get_chunk_location(&chunk(999_999)).await.unwrap(), None);
    assert!(matches!(
        s.get_manifest_for_read("no-such-version", 3).await,
        Err(MetaError::NoSuchKey)
    ));
    // All of a GET's reads in one call: the same answers.
    assert!(s
        .get_object_for_read("nope", "k", 3)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.get_object_for_read("rb", "other", 3).await.unwrap(),
        Some((got_b.clone(), None, None))
    );
    for wanted in [0, 2, 10] {
        let (fb, fo, fm) = s
            .get_object_for_read("rb", "k", wanted)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fb, got_b);
        assert_eq!(fo, Some(o.clone()));
        let (fm, frecords) = fm.expect("an object has a manifest");
        let (manifest, records) = s
            .get_manifest_for_read(&o.version_id, wanted)
            .await
            .unwrap();
        assert_eq!(fm, manifest);
        assert_eq!(
            frecords.into_iter().map(for_read).collect::<Vec<_>>(),
            records.into_iter().map(for_read).collect::<Vec<_>>()
        );
    }
    // A deleted key: the bucket is still found, the key is not.
    s.delete_object(&b, "k").await.unwrap();
    assert_eq!(
        s.get_bucket_and_object("rb", "k").await.unwrap(),
        Some((b.clone(), None))
    );
    assert_eq!(
        s.get_object_for_read("rb", "k", 3).await.unwrap(),
        Some((b, None, None))
    );
}

pub async fn commit_into_missing_bucket_refused(s: Store) {
    let b = new_bucket(&s, "gone").await;
    s.delete_bucket("gone").await.unwrap();
    let r = s
        .commit_object(
            &b,
            object("k", CHUNK_SIZE, "e"),
            manifest(&[chunk(1)]),
            placements(&[chunk(1)], &["n1"]),
            PutCondition::None,
        )
        .await;
    assert!(matches!(r, Err(MetaError::NoSuchBucket(_))), "{r:?}");
    // Re-created under a new id: the stale record must not write into it.
    let fresh = new_bucket(&s, "gone").await;
    let r = s
        .commit_object(
            &b,
            object("k", CHUNK_SIZE, "e"),
            manifest(&[chunk(1)]),
            placements(&[chunk(1)], &["n1"]),
            PutCondition::None,
        )
        .await;
    assert!(matches!(r, Err(MetaError::NoSuchBucket(_))), "{r:?}");
    assert!(s.get_object(&fresh, "k").await.unwrap().is_none());
    assert_eq!(refs(&s, chunk(1)).await, 0);
}

pub async fn overwrite_releases_refs_of_replaced_version(s: Store) {
    let b = new_bucket(&s, "b").await;
    let v1 = put(&s, &b, "k", &[chunk(1), chunk(2)]).await;
    let v2 = object("k", 2 * CHUNK_SIZE, "v2");
    let out = s
        .commit_object(
            &b,
            v2.clone(),
            manifest(&[chunk(2), chunk(3)]),
            placements(&[chunk(3)], &["n1", "n2"]),
            PutCondition::None,
        )
        .await
        .unwrap();
    assert_eq!(out.replaced, Some(v1));
    assert_eq!(s.get_object(&b, "k").await.unwrap(), Some(v2));
    assert_eq!(refs(&s, chunk(1)).await, 0);
    assert_eq!(refs(&s, chunk(2)).await, 1);
    assert_eq!(refs(&s, chunk(3)).await, 1);
    let c1 = s.get_chunk(&chunk(1)).await.unwrap().unwrap();
    assert!(
        c1.unreferenced_since > 0,
        "an unreferenced chunk records since when"
    );
}

pub async fn delete_releases_refs(s: Store) {
    let b = new_bucket(&s, "b").await;
    let v1 = put(&s, &b, "k", &[chunk(1)]).await;
    assert_eq!(s.delete_object(&b, "k").await.unwrap(), Some(v1));
    assert!(s.get_object(&b, "k").await.unwrap().is_none());
    assert_eq!(refs(&s, chunk(1)).await, 0);
    assert_eq!(s.delete_object(&b, "k").await.unwrap(), None);
    assert_eq!(s.delete_object(&b, "never").await.unwrap(), None);
}

pub async fn delete_marker_is_current_but_not_listed(s: Store) {
    let b = new_bucket(&s, "b").await;
    put(&s, &b, "a", &[chunk(1)]).await;
    put(&s, &b, "d/x", &[chunk(2)]).await;
    let mut marker = object("a", 0, "");
    marker.delete_marker = true;
    let out = s
        .commit_object(&b, marker.clone(), vec![], vec![], PutCondition::None)
        .await
        .unwrap();
    assert_eq!(out.replaced.unwrap().key, "a");
    assert_eq!(refs(&s, chunk(1)).await, 0);
    assert_eq!(s.get_object(&b, "a").await.unwrap(), Some(marker.clone()));
    let (keys, _, _) = page(&s, &b, query("", None, None, 100)).await;
    assert_eq!(keys, ["d/x"]);
    // A delete marker does not count as an object for If-None-Match: *.
    s.commit_object(
        &b,
        object("a", 0, "n"),
        vec![],
        vec![],
        PutCondition::IfNoneMatchStar,
    )
    .await
    .unwrap();
    // A key whose only row is a delete marker does not make a common prefix appear.
    let mut m2 = object("d/x", 0, "");
    m2.delete_marker = true;
    s.commit_object(&b, m2, vec![], vec![], PutCondition::None)
        .await
        .unwrap();
    let (keys, prefixes, _) = page(&s, &b, query("", Some("/"), None, 100)).await;
    assert_eq!(keys, ["a"]);
    assert!(prefixes.is_empty(), "{prefixes:?}");
}

pub async fn conditional_if_none_match_star(s: Store) {
    let b = new_bucket(&s, "b").await;
    let first = object("k", CHUNK_SIZE, "one");
    s.commit_object(
        &b,
        first.clone(),
        manifest(&[chunk(1)]),
        placements(&[chunk(1)], &["n1"]),
        PutCondition::IfNoneMatchStar,
    )
    .await
    .unwrap();
    let r = s
        .commit_object(
            &b,
            object("k", CHUNK_SIZE, "two"),
            manifest(&[chunk(2)]),
            placements(&[chunk(2)], &["n1"]),
            PutCondition::IfNoneMatchStar,
        )
        .await;
    assert!(matches!(r, Err(MetaError::PreconditionFailed)), "{r:?}");
    // Nothing of the refused commit is visible.
    assert_eq!(s.get_object(&b, "k").await.unwrap(), Some(first));
    assert_eq!(refs(&s, chunk(1)).await, 1);
    assert_eq!(refs(&s, chunk(2)).await, 0);
}

pub async fn conditional_if_match(s: Store) {
    let b = new_bucket(&s, "b").await;
    let r = s
        .commit_object(
            &b,
            object("k", 0, "x"),
            vec![],
            vec![],
            PutCondition::IfMatch("x".into()),
        )
        .await;
    assert!(
        matches!(r, Err(MetaError::PreconditionFailed)),
        "no object: {r:?}"
    );
    assert!(s.get_object(&b, "k").await.unwrap().is_none());
    let v1 = put(&s, &b, "k", &[chunk(1)]).await;
    let r = s
        .commit_object(
            &b,
            object("k", 0, "new"),
            vec![],
            vec![],
            PutCondition::IfMatch("wrong".into()),
        )
        .await;
    assert!(matches!(r, Err(MetaError::PreconditionFailed)), "{r:?}");
    assert_eq!(s.get_object(&b, "k").await.unwrap(), Some(v1.clone()));
    let v2 = object("k", 0, "new");
    let out = s
        .commit_object(
            &b,
            v2.clone(),
            vec![],
            vec![],
            PutCondition::IfMatch(v1.etag.clone()),
        )
        .await
        .unwrap();
    assert_eq!(out.replaced, Some(v1));
    assert_eq!(s.get_object(&b, "k").await.unwrap(), Some(v2));
    assert_eq!(refs(&s, chunk(1)).await, 0);
}

pub async fn racing_if_none_match_star_one_winner(s: Store) {
    let b = new_bucket(&s, "b").await;
    for round in 0..5u64 {
        let key = format!("k{round}");
        let tasks: Vec<_> = (0..8u64)
            .map(|i| {
                let (s, b, key) = (s.clone(), b.clone(), key.clone());
                tokio::spawn(async move {
                    let c = chunk(round * 100 + i);
                    let o = object(&key, CHUNK_SIZE, &format!("e{i}"));
                    let r = s
                        .commit_object(
                            &b,
                            o.clone(),
                            manifest(&[c]),
                            placements(&[c], &["n1"]),
                            PutCondition::IfNoneMatchStar,
                        )
                        .await;
                    (o, c, r)
                })
            })
            .collect();
        let mut winner = None;
        for t in tasks {
            let (o, c, r) = t.await.unwrap();
            match r {
                Ok(out) => {
                    assert!(winner.is_none(), "two winners for {key}");
                    assert_eq!(out.replaced, None);
                    winner = Some(o);
                    assert_eq!(refs(&s, c).await, 1);
                }
                Err(MetaError::PreconditionFailed) => assert_eq!(refs(&s, c).await, 0),
                Err(e) => panic!("unexpected {e}"),
            }
        }
        let winner = winner.expect("one commit wins");
        assert_eq!(s.get_object(&b, &key).await.unwrap(), Some(winner));
    }
}

pub async fn concurrent_commits_all_listable(s: Store) {
    let b = new_bucket(&s, "b").await;
    let keys: Vec<String> = (0..100).map(|i| format!("obj-{i:03}")).collect();
    let tasks: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let (s, b, k) = (s.clone(), b.clone(), k.clone());
            tokio::spawn(async move { put(&s, &b, &k, &[chunk(i as u64)]).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (listed, _, _) = list_all(&s, &b, "", None, 1000).await;
    assert_eq!(listed, keys);
    for (i, k) in keys.iter().enumerate() {
        let o = s.get_object(&b, k).await.unwrap().unwrap();
        assert_eq!(
            s.get_manifest(&o.version_id).await.unwrap(),
            manifest(&[chunk(i as u64)])
        );
    }
}

/// Refused commits racing with valid ones: the valid ones all land (a refusal must not roll
/// back the others, e.g. those sharing a group commit).
pub async fn refused_commit_does_not_disturb_concurrent_ones(s: Store) {
    let b = new_bucket(&s, "b").await;
    put(&s, &b, "taken", &[chunk(9999)]).await;
    let tasks: Vec<_> = (0..60u64)
        .map(|i| {
            let (s, b) = (s.clone(), b.clone());
            tokio::spawn(async move {
                let (key, cond) = if i % 2 == 0 {
                    ("taken".to_string(), PutCondition::IfNoneMatchStar)
                } else {
                    (format!("free-{i:02}"), PutCondition::IfNoneMatchStar)
                };
                let c = chunk(i);
                let r = s
                    .commit_object(
                        &b,
                        object(&key, CHUNK_SIZE, "e"),
                        manifest(&[c]),
                        placements(&[c], &["n1"]),
                        cond,
                    )
                    .await;
                (i, r)
            })
        })
        .collect();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        if i % 2 == 0 {
            assert!(
                matches!(r, Err(MetaError::PreconditionFailed)),
                "{i}: {r:?}"
            );
        } else {
            r.unwrap();
        }
    }
    let (keys, _, _) = list_all(&s, &b, "free-", None, 1000).await;
    assert_eq!(keys.len(), 30);
    for i in 0..60u64 {
        assert_eq!(refs(&s, chunk(i)).await, i % 2, "chunk {i}");
    }
}

pub async fn nodes_heartbeat_and_state(s: Store) {
    assert!(s.list_nodes().await.unwrap().is_empty());
    let r = s.record_heartbeat(heartbeat("node-b", 1000)).await.unwrap();
    assert_eq!(r.first_seen, 1000);
    assert_eq!(r.admin_state, AdminState::Active);
    s.record_heartbeat(heartbeat("node-a", 1500)).await.unwrap();
    s.set_node_state("node-b", AdminState::Draining)
        .await
        .unwrap();
    let mut hb = heartbeat("node-b", 3000);
    hb.used_bytes = 42;
    let r = s.record_heartbeat(hb.clone()).await.unwrap();
    assert_eq!(r.first_seen, 1000, "first_seen is kept");
    assert_eq!(
        r.admin_state,
        AdminState::Draining,
        "a heartbeat keeps the admin state"
    );
    assert_eq!(r.last, hb);
    let mut nodes = s.list_nodes().await.unwrap();
    nodes.sort_by(|a, b| a.last.node_id.cmp(&b.last.node_id));
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[1], r);
    assert_eq!(nodes[0].last.at, 1500);
    assert!(matches!(
        s.set_node_state("ghost", AdminState::Removed).await,
        Err(MetaError::NoSuchNode(_))
    ));
}

fn event(node: &str, at: i64, from: Option<LifecycleState>, to: LifecycleState) -> NodeEvent {
    NodeEvent {
        node_id: node.into(),
        at,
        from,
        to,
        reason: format!("{node} at {at}"),
    }
}

pub async fn node_events_history(s: Store) {
    use LifecycleState::*;
    assert!(s.node_events(None, 10).await.unwrap().is_empty());
    assert!(s.node_events(Some("node-a"), 10).await.unwrap().is_empty());
    let a = [
        event("node-a", 1000, None, Up),
        event("node-a", 5000, Some(Up), Suspect),
        event("node-a", 9000, Some(Suspect), Down),
        // Two changes in one millisecond are both kept, in the order they were written.
        event("node-a", 9000, Some(Down), Draining),
    ];
    let b = [
        event("node-b", 2000, None, Up),
        event("node-b", 7000, Some(Up), Removed),
    ];
    for e in a.iter().chain(&b) {
        s.record_node_event(e.clone()).await.unwrap();
    }
    let of_a = s.node_events(Some("node-a"), 10).await.unwrap();
    assert_eq!(
        of_a,
        vec![a[3].clone(), a[2].clone(), a[1].clone(), a[0].clone()]
    );
    assert_eq!(s.node_events(Some("node-a"), 2).await.unwrap(), of_a[..2]);
    let all = s.node_events(None, 10).await.unwrap();
    let times: Vec<(String, i64)> = all.iter().map(|e| (e.node_id.clone(), e.at)).collect();
    assert_eq!(
        times,
        [
            ("node-a", 9000),
            ("node-a", 9000),
            ("node-b", 7000),
            ("node-a", 5000),
            ("node-b", 2000),
            ("node-a", 1000)
        ]
        .map(|(n, t)| (n.to_string(), t))
    );
    assert_eq!(all[0], a[3], "newest first within one millisecond too");
    assert_eq!(s.node_events(None, 3).await.unwrap(), all[..3]);
    assert!(s.node_events(Some("ghost"), 10).await.unwrap().is_empty());
}

fn key_record(id: &str) -> AccessKeyRecord {
    AccessKeyRecord {
        access_key_id: id.to_string(),
        secret_key: format!("secret-of-{id}"),
        name: "test".into(),
        created: now_millis(),
        is_root: false,
        permissions: Default::default(),
        can_create_buckets: true,
    }
}

pub async fn access_keys_and_permissions(s: Store) {
    assert!(s.get_access_key("AK1").await.unwrap().is_none());
    let k1 = key_record("AK1");
    s.create_access_key(key_record("AK2")).await.unwrap();
    s.create_access_key(k1.clone()).await.unwrap();
    let dup = s.create_access_key(key_record("AK1")).await;
    assert!(
        matches!(dup, Err(MetaError::KeyAlreadyExists(_))),
        "{dup:?}"
    );
    assert_eq!(s.get_access_key("AK1").await.unwrap(), Some(k1.clone()));
    let mut ids: Vec<String> = s
        .list_access_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.access_key_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["AK1", "AK2"]);
    s.set_permission("AK1", "photos", Some(Permission::Write))
        .await
        .unwrap();
    // Each change is seen by the next read, even of a key read just before it.
    let got = s.get_access_key("AK1").await.unwrap().unwrap();
    assert_eq!(got.permissions.get("photos"), Some(&Permission::Write));
    s.set_permission("AK1", "docs", Some(Permission::Read))
        .await
        .unwrap();
    s.set_permission("AK1", "docs", None).await.unwrap();
    let got = s.get_access_key("AK1").await.unwrap().unwrap();
    assert_eq!(
        got.permissions.into_iter().collect::<Vec<_>>(),
        [("photos".to_string(), Permission::Write)]
    );
    assert_eq!(got.secret_key, k1.secret_key);
    let r = s
        .set_permission("AK9", "photos", Some(Permission::Read))
        .await;
    assert!(matches!(r, Err(MetaError::NoSuchAccessKey(_))), "{r:?}");
    s.delete_access_key("AK1").await.unwrap();
    assert!(s.get_access_key("AK1").await.unwrap().is_none());
    let r = s.delete_access_key("AK1").await;
    assert!(matches!(r, Err(MetaError::NoSuchAccessKey(_))), "{r:?}");
    assert_eq!(s.list_access_keys().await.unwrap().len(), 1);
}

pub async fn leases_one_holder(s: Store) {
    let long = Duration::from_secs(60);
    assert!(s.acquire_lease("repair", "g1", long).await.unwrap());
    assert!(!s.acquire_lease("repair", "g2", long).await.unwrap());
    assert!(
        s.acquire_lease("repair", "g1", long).await.unwrap(),
        "re-acquire renews"
    );
    assert!(s.renew_lease("repair", "g1", long).await.unwrap());
    assert!(!s.renew_lease("repair", "g2", long).await.unwrap());
    // Racing acquires of a free lease: exactly one wins.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(
                async move { s.acquire_lease("gc", &format!("h{i}"), long).await.unwrap() },
            )
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += t.await.unwrap() as usize;
    }
    assert_eq!(wins, 1);
    // Release by a non-holder does nothing; by the holder frees it.
    s.release_lease("repair", "g2").await.unwrap();
    assert!(!s.acquire_lease("repair", "g2", long).await.unwrap());
    s.release_lease("repair", "g1").await.unwrap();
    assert!(
        !s.renew_lease("repair", "g1", long).await.unwrap(),
        "a released lease is lost"
    );
    assert!(s.acquire_lease("repair", "g2", long).await.unwrap());
    // Expiry: a short lease can be taken over once it expired (poll with a deadline).
    assert!(s
        .acquire_lease("short", "a", Duration::from_millis(200))
        .await
        .unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if s.acquire_lease("short", "b", Duration::from_secs(60))
            .await
            .unwrap()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired lease never became free"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !s.renew_lease("short", "a", long).await.unwrap(),
        "the old holder lost it"
    );
}

pub async fn settings_get_or_init(s: Store) {
    assert_eq!(s.get_setting("root-secret").await.unwrap(), None);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.setting_get_or_init("root-secret", &format!("v{i}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    let stored = s.get_setting("root-secret").await.unwrap().unwrap();
    assert!(
        seen.iter().all(|v| *v == stored),
        "every caller sees the winner: {seen:?}"
    );
    assert_eq!(
        s.setting_get_or_init("root-secret", "later").await.unwrap(),
        stored
    );
}

pub async fn stats_follow_commits_and_deletes(s: Store) {
    assert_eq!(s.stats().await.unwrap(), StoreStats::default());
    let b = new_bucket(&s, "b").await;
    new_bucket(&s, "c").await;
    put(&s, &b, "x", &[chunk(1), chunk(2)]).await;
    put(&s, &b, "y", &[chunk(2)]).await;
    let st = s.stats().await.unwrap();
    assert_eq!(st.buckets, 2);
    assert_eq!(st.objects, 2);
    assert_eq!(st.object_bytes, 3 * CHUNK_SIZE);
    assert_eq!(st.chunks, 2);
    assert_eq!(st.chunk_bytes, 2 * CHUNK_SIZE);
    put(&s, &b, "x", &[chunk(3)]).await;
    s.delete_object(&b, "y").await.unwrap();
    let st = s.stats().await.unwrap();
    assert_eq!(st.objects, 1);
    assert_eq!(st.object_bytes, CHUNK_SIZE);
    assert_eq!(
        st.chunks, 3,
        "unreferenced chunks stay until garbage collection"
    );
}
