//! Chunk records: replicas, under-replication, garbage-collection candidates, per-node listing.

use super::util::*;
use sdfbs_metadata::*;

pub async fn chunk_replicas_add_drop(s: Store) {
    let b = new_bucket(&s, "b").await;
    assert!(s.get_chunk(&chunk(1)).await.unwrap().is_none());
    put(&s, &b, "k", &[chunk(1)]).await;
    s.add_replica(&chunk(1), "n3").await.unwrap();
    s.add_replica(&chunk(1), "n3").await.unwrap();
    let mut r = s.get_chunk(&chunk(1)).await.unwrap().unwrap().replicas;
    r.sort();
    assert_eq!(r, ["n1", "n2", "n3"]);
    s.drop_replica(&chunk(1), "n1").await.unwrap();
    s.drop_replica(&chunk(1), "n1").await.unwrap();
    let mut r = s.get_chunk(&chunk(1)).await.unwrap().unwrap().replicas;
    r.sort();
    assert_eq!(r, ["n2", "n3"]);
    // Placements of a later commit merge into the record.
    s.commit_object(
        &b,
        object("k2", CHUNK_SIZE, "e"),
        manifest(&[chunk(1)]),
        placements(&[chunk(1)], &["n4", "n2"]),
        PutCondition::None,
    )
    .await
    .unwrap();
    let mut r = s.get_chunk(&chunk(1)).await.unwrap().unwrap().replicas;
    r.sort();
    assert_eq!(r, ["n2", "n3", "n4"]);
}

pub async fn under_replicated_chunks_found(s: Store) {
    let b = new_bucket(&s, "b").await;
    put(&s, &b, "k", &[chunk(1), chunk(2), chunk(3), chunk(4)]).await;
    s.drop_replica(&chunk(2), "n2").await.unwrap();
    s.drop_replica(&chunk(4), "n1").await.unwrap();
    s.drop_replica(&chunk(4), "n2").await.unwrap();
    let healthy: Vec<NodeId> = vec!["n1".into(), "n2".into()];
    let ids = |v: Vec<ChunkRecord>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let found = s
        .under_replicated_chunks(2, &healthy, None, 100)
        .await
        .unwrap();
    assert_eq!(ids(found), [chunk(2), chunk(4)]);
    // n2 unhealthy: every chunk is short of 2 healthy replicas.
    let found = s
        .under_replicated_chunks(2, &["n1".into()], None, 100)
        .await
        .unwrap();
    assert_eq!(ids(found), [chunk(1), chunk(2), chunk(3), chunk(4)]);
    // Paging by id.
    let found = s
        .under_replicated_chunks(2, &["n1".into()], Some(chunk(2)), 1)
        .await
        .unwrap();
    assert_eq!(ids(found), [chunk(3)]);
    assert!(s
        .under_replicated_chunks(1, &healthy, None, 100)
        .await
        .unwrap()
        .iter()
        .all(|c| c.id == chunk(4)));
    // Unreferenced chunks are garbage, not repair work.
    s.delete_object(&b, "k").await.unwrap();
    assert!(s
        .under_replicated_chunks(2, &healthy, None, 100)
        .await
        .unwrap()
        .is_empty());
}

pub async fn unreferenced_chunks_and_gc(s: Store) {
    let b = new_bucket(&s, "b").await;
    put(&s, &b, "a", &[chunk(1), chunk(2)]).await;
    put(&s, &b, "b", &[chunk(2)]).await;
    let before_release = now_millis();
    s.delete_object(&b, "a").await.unwrap();
    let ids = |v: Vec<ChunkRecord>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let future = now_millis() + 60_000;
    assert_eq!(
        ids(s.unreferenced_chunks(future, None, 100).await.unwrap()),
        [chunk(1)]
    );
    assert!(
        s.unreferenced_chunks(before_release - 1, None, 100)
            .await
            .unwrap()
            .is_empty(),
        "grace period"
    );
    let c1 = s.get_chunk(&chunk(1)).await.unwrap().unwrap();
    assert!(c1.unreferenced_since >= before_release - 1000);
    assert!(
        !s.delete_chunk_if_unreferenced(&chunk(2)).await.unwrap(),
        "chunk 2 is still used"
    );
    assert!(s.get_chunk(&chunk(2)).await.unwrap().is_some());
    // Reuse before GC: a commit referencing chunk 1 again takes it out of the candidates.
    put(&s, &b, "c", &[chunk(1)]).await;
    assert!(s
        .unreferenced_chunks(future, None, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(!s.delete_chunk_if_unreferenced(&chunk(1)).await.unwrap());
    s.delete_object(&b, "c").await.unwrap();
    s.delete_object(&b, "b").await.unwrap();
    assert_eq!(
        ids(s.unreferenced_chunks(future, None, 100).await.unwrap()),
        [chunk(1), chunk(2)]
    );
    assert_eq!(
        ids(s
            .unreferenced_chunks(future, Some(chunk(1)), 100)
            .await
            .unwrap()),
        [chunk(2)]
    );
    assert!(s.delete_chunk_if_unreferenced(&chunk(1)).await.unwrap());
    assert!(s.get_chunk(&chunk(1)).await.unwrap().is_none());
    assert!(
        !s.delete_chunk_if_unreferenced(&chunk(1)).await.unwrap(),
        "already gone"
    );
    assert_eq!(
        ids(s.unreferenced_chunks(future, None, 100).await.unwrap()),
        [chunk(2)]
    );
    assert!(s
        .chunks_on_node("n1", None, 100)
        .await
        .unwrap()
        .iter()
        .all(|c| c.id != chunk(1)));
}

pub async fn chunks_on_node_paged(s: Store) {
    let b = new_bucket(&s, "b").await;
    let chunks: Vec<ChunkId> = (1..=5).map(chunk).collect();
    s.commit_object(
        &b,
        object("k", 5 * CHUNK_SIZE, "e"),
        manifest(&chunks),
        placements(&chunks, &["n1", "n2"]),
        PutCondition::None,
    )
    .await
    .unwrap();
    s.add_replica(&chunk(3), "n3").await.unwrap();
    s.drop_replica(&chunk(4), "n1").await.unwrap();
    let ids = |v: Vec<ChunkRecord>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.chunks_on_node("n1", None, 100).await.unwrap()),
        [chunk(1), chunk(2), chunk(3), chunk(5)]
    );
    assert_eq!(
        ids(s.chunks_on_node("n1", None, 2).await.unwrap()),
        [chunk(1), chunk(2)]
    );
    assert_eq!(
        ids(s.chunks_on_node("n1", Some(chunk(2)), 2).await.unwrap()),
        [chunk(3), chunk(5)]
    );
    assert_eq!(
        ids(s.chunks_on_node("n3", None, 100).await.unwrap()),
        [chunk(3)]
    );
    assert!(
        s.chunks_on_node("n", None, 100).await.unwrap().is_empty(),
        "node ids are not prefixes"
    );
    assert!(s.chunks_on_node("n9", None, 100).await.unwrap().is_empty());
}

pub async fn dedup_shares_chunk_records(s: Store) {
    let b = new_bucket(&s, "b").await;
    put(&s, &b, "x", &[chunk(1)]).await;
    // A commit may reuse an existing chunk without a placement (deduplicated upload).
    s.commit_object(
        &b,
        object("y", CHUNK_SIZE, "e"),
        manifest(&[chunk(1)]),
        vec![],
        PutCondition::None,
    )
    .await
    .unwrap();
    assert_eq!(refs(&s, chunk(1)).await, 2);
    assert_eq!(s.stats().await.unwrap().chunks, 1);
    s.delete_object(&b, "x").await.unwrap();
    assert_eq!(refs(&s, chunk(1)).await, 1);
}
