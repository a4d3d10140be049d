//! The chunk pipeline against a real cluster in-process: round trips of every boundary size,
//! ranges, deduplication, zones, and a failing body. (Faults: `cluster_faults.rs`.)

mod cluster_support;

use bytes::Bytes;
use cluster_support::*;
use sdfbs_gateway::pipeline::{PipelineError, CHUNK_SIZE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_every_boundary_size_round_trip() {
    let cluster = TestCluster::start(3, 2).await;
    let sizes = [0, 1, MIB - 1, MIB, MIB + 1, 5 * MIB + MIB / 2];
    for (i, &size) in sizes.iter().enumerate() {
        let bytes = data(size, i as u64 + 1);
        let written = cluster.put(&format!("obj-{size}"), &bytes).await;
        assert_eq!(
            written.manifest.len(),
            size.div_ceil(CHUNK_SIZE),
            "size {size}"
        );
        for (j, e) in written.manifest.iter().enumerate() {
            let expected = CHUNK_SIZE.min(size - j * CHUNK_SIZE) as u64;
            assert_eq!(e.size, expected, "chunk {j} of size {size}");
        }
        assert_placements(&written, 2);
        let back = cluster
            .read(&written, 0, size as u64)
            .await
            .expect("read back");
        assert!(back == bytes, "size {size}: bytes differ");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_return_exactly_the_requested_bytes() {
    let cluster = TestCluster::start(3, 2).await;
    let size = 5 * MIB + MIB / 2;
    let bytes = data(size, 42);
    let written = cluster.put("ranged", &bytes).await;
    let m = MIB as u64;
    let s = size as u64;
    for (start, end) in [
        (0, 1),
        (m - 1, m + 1),
        (m, 2 * m),
        (2 * m + 5, s),
        (s - 1, s),
        (3, 3 * m + 7),
        (0, s),
        (7, 7),
    ] {
        let back = cluster
            .read(&written, start, end)
            .await
            .expect("read range");
        assert!(
            back == bytes[start as usize..end as usize],
            "range {start}..{end} differs"
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_chunks_stay_where_they_are() {
    let gib = 1u64 << 30;
    let small = NodeSpec {
        zone: "default",
        capacity: Some(gib),
    };
    let mut cluster = TestCluster::start_with(&[small.clone(), small.clone(), small], 2).await;
    let bytes = data(4 * MIB, 9);
    let first = cluster.put("a", &bytes).await;

    // A node with a million times the capacity now wins nearly every HRW draw...
    let big = cluster
        .add_node(&NodeSpec {
            zone: "default",
            capacity: Some(gib << 20),
        })
        .await;
    let fresh = cluster.put("fresh", &data(4 * MIB, 10)).await;
    assert!(
        fresh.placements.iter().all(|p| p.nodes.contains(&big)),
        "new chunks go to the heavy node: {:?}",
        fresh.placements
    );
    // ...but chunks the cluster already holds are touched where they are, not sent again.
    let second = cluster.put("b", &bytes).await;
    for (a, b) in first.placements.iter().zip(&second.placements) {
        let (mut x, mut y) = (a.nodes.clone(), b.nodes.clone());
        x.sort();
        y.sort();
        assert_eq!(x, y, "a deduplicated chunk stays on the nodes that hold it");
    }
    let back = cluster
        .read(&second, 0, bytes.len() as u64)
        .await
        .expect("read");
    assert!(back == bytes);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_land_in_distinct_zones() {
    let zone = |z| NodeSpec {
        zone: z,
        capacity: None,
    };
    let cluster = TestCluster::start_with(&[zone("a"), zone("a"), zone("a"), zone("b")], 2).await;
    let zone_b = cluster.nodes[3]
        .as_ref()
        .expect("node")
        .node_id()
        .to_string();
    let written = cluster.put("zoned", &data(8 * MIB, 11)).await;
    assert_placements(&written, 2);
    for p in &written.placements {
        assert!(p.nodes.contains(&zone_b), "one replica in each zone: {p:?}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_body_aborts_the_write() {
    let cluster = TestCluster::start(2, 2).await;
    let mut pieces: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from(data(MIB + 5, 1))),
        Ok(Bytes::from(data(1000, 2))),
    ];
    pieces.push(Err(std::io::Error::other("signature mismatch")));
    let result = cluster
        .gw()
        .gateway
        .chunks
        .write_body(futures::stream::iter(pieces), ())
        .await;
    assert!(
        matches!(result, Err(PipelineError::Body(ref m)) if m.contains("signature mismatch")),
        "{:?}",
        result.map(|(w, _)| w)
    );
    cluster.stop().await;
}
