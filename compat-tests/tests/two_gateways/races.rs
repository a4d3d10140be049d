//! Races between clients of different gateways, which only the shared store can settle:
//! conditional creates of one key, and DeleteBucket against PUTs into the bucket.

use std::sync::Arc;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use tokio::sync::Barrier;

use crate::common::{assert_err, body_bytes, bucket, ok, quoted_md5};
use crate::{clients, two_gateways};

/// What a failed SDK call showed: HTTP status (0 when no answer came) and S3 error code.
fn failure<E: ProvideErrorMetadata>(e: &aws_sdk_s3::error::SdkError<E>) -> (u16, String) {
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (status, e.code().unwrap_or_default().to_string())
}

/// (b) 32 `If-None-Match: *` PUTs of one key, half through each gateway, released together:
/// exactly one 200 and 31 `412 PreconditionFailed`, and the object holds the winner's bytes
/// through both gateways. Repeated on a few keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_creates_across_gateways_have_one_winner() {
    const WRITERS: usize = 32;
    const ROUNDS: usize = 4;
    let Some(cluster) = two_gateways() else {
        return;
    };
    let gw = clients(&cluster);
    let b = bucket("lock");
    ok(gw[0].create_bucket().bucket(&b).send().await);

    for round in 0..ROUNDS {
        let key = format!("lock-{round}");
        let start = Arc::new(Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for i in 0..WRITERS {
            let s3 = gw[i % 2].clone();
            let (b, key, start) = (b.clone(), key.clone(), Arc::clone(&start));
            tasks.push(tokio::spawn(async move {
                let body = body_of(round, i);
                start.wait().await;
                let r = s3
                    .put_object()
                    .bucket(&b)
                    .key(&key)
                    .if_none_match("*")
                    .body(ByteStream::from(body))
                    .send()
                    .await;
                (i, r.map(|_| ()).map_err(|e| failure(&e)))
            }));
        }
        let mut winners = Vec::new();
        let mut others = Vec::new();
        for t in tasks {
            match t.await.expect("a writer task panicked") {
                (i, Ok(())) => winners.push(i),
                (_, Err((412, code))) if code == "PreconditionFailed" => {}
                (i, Err(other)) => others.push((i, other)),
            }
        }
        assert!(
            others.is_empty(),
            "round {round}: answers other than 200 or 412 PreconditionFailed \
             (writer, (status, code)): {others:?}"
        );
        assert_eq!(
            winners.len(),
            1,
            "round {round}: writers answered 200: {winners:?}"
        );
        let want = body_of(round, winners[0]);
        for (g, s3) in gw.iter().enumerate() {
            let got = ok(s3.get_object().bucket(&b).key(&key).send().await);
            assert_eq!(got.e_tag(), Some(quoted_md5(&want).as_str()));
            assert!(
                body_bytes(got).await == want,
                "round {round}: gateway {g} does not return the bytes of the winner, writer {}",
                winners[0]
            );
        }
    }
}

/// The body of writer `i` in `round`: distinct for every writer, a few KiB.
fn body_of(round: usize, i: usize) -> Vec<u8> {
    format!("round {round} writer {i};")
        .repeat(200)
        .into_bytes()
}

/// One DeleteBucket racing PUTs: what each side was answered.
struct RaceOutcome {
    /// Keys whose PUT was answered 200, with their bytes.
    acknowledged: Vec<(String, Vec<u8>)>,
    /// (key, status, code) of the PUTs that failed.
    refused: Vec<(String, u16, String)>,
    /// The DeleteBucket answer: Ok, or (status, code).
    deleted: Result<(), (u16, String)>,
}

/// (c) DeleteBucket through one gateway racing PUTs through the other, many rounds with the
/// delete sent later and later in the PUTs' progress: a PUT answered 200 must never leave an
/// invisible object. Either the delete lost (409 BucketNotEmpty) and every acknowledged object
/// reads back, or it won and no PUT was acknowledged, and the bucket is gone for both gateways
/// (a new bucket of that name is empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_racing_puts_never_loses_an_acknowledged_put() {
    /// How many HeadBucket round trips the delete waits after the PUTs start: from at once to
    /// well after the first PUTs are answered, so that the rounds cover the moments when PUTs
    /// are still sending chunks, committing, and done.
    const DELAYS: [usize; 8] = [0, 1, 2, 4, 8, 16, 32, 64];
    const ROUNDS: usize = 3 * DELAYS.len();
    let Some(cluster) = two_gateways() else {
        return;
    };
    let gw = clients(&cluster);
    let (mut won, mut lost) = (0, 0);
    for round in 0..ROUNDS {
        // Alternate directions.
        let (put_gw, del_gw) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        let b = bucket(&format!("race{round}"));
        ok(gw[put_gw].create_bucket().bucket(&b).send().await);
        ok(gw[del_gw].head_bucket().bucket(&b).send().await);

        let delay = DELAYS[round % DELAYS.len()];
        let out = race_delete_against_puts(&gw[put_gw], &gw[del_gw], &b, delay).await;
        let bad: Vec<_> = out
            .refused
            .iter()
            .filter(|(_, status, code)| !(*status == 404 && code == "NoSuchBucket"))
            .collect();
        assert!(
            bad.is_empty(),
            "round {round}: PUTs failed other than 404 NoSuchBucket: {bad:?}"
        );
        match &out.deleted {
            Ok(()) => won += 1,
            Err((409, code)) if code == "BucketNotEmpty" => lost += 1,
            Err(other) => panic!("round {round}: DeleteBucket answered {other:?}"),
        }
        // The invariant: every acknowledged PUT is readable, through both gateways.
        for (key, data) in &out.acknowledged {
            for (g, s3) in gw.iter().enumerate() {
                match s3.get_object().bucket(&b).key(key).send().await {
                    Ok(got) => assert!(
                        body_bytes(got).await == *data,
                        "round {round}: {key} reads back other bytes through gateway {g}"
                    ),
                    Err(e) => panic!(
                        "round {round}: PUT {b}/{key} was answered 200 but GET through gateway \
                         {g} answers {:?} (DeleteBucket answered {:?}; {} PUTs acknowledged, \
                         {} refused)",
                        failure(&e),
                        out.deleted,
                        out.acknowledged.len(),
                        out.refused.len()
                    ),
                }
            }
        }
        if out.deleted.is_ok() {
            // Gone for both gateways, and nothing of the racing PUTs resurfaces under the name.
            for s3 in &gw {
                assert_err(s3.head_bucket().bucket(&b).send().await, 404, "");
            }
            ok(gw[put_gw].create_bucket().bucket(&b).send().await);
            let left = ok(gw[del_gw].list_objects_v2().bucket(&b).send().await);
            assert!(
                left.contents().is_empty(),
                "round {round}: a new bucket {b} lists objects of the deleted one: {:?}",
                left.contents()
            );
        }
    }
    // Which side wins depends on timing; both outcomes are checked above whenever they occur.
    eprintln!("DeleteBucket won {won} and lost {lost} of {ROUNDS} races");
}

/// Sends DeleteBucket `b` through `deleter` (after `delay` HeadBucket round trips) while six
/// writers PUT new keys through `putter` until one is refused or each has stored four.
async fn race_delete_against_puts(
    putter: &Client,
    deleter: &Client,
    b: &str,
    delay: usize,
) -> RaceOutcome {
    const WRITERS: usize = 6;
    const PUTS_EACH: usize = 4;
    let start = Arc::new(Barrier::new(WRITERS + 1));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (s3, b, start) = (putter.clone(), b.to_string(), Arc::clone(&start));
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut refused = Vec::new();
            start.wait().await;
            for n in 0..PUTS_EACH {
                let key = format!("w{w}/{n}");
                let data = format!("{b}/{key}").repeat(50).into_bytes();
                let r = s3
                    .put_object()
                    .bucket(&b)
                    .key(&key)
                    .body(ByteStream::from(data.clone()))
                    .send()
                    .await;
                match r {
                    Ok(_) => acknowledged.push((key, data)),
                    Err(e) => {
                        let (status, code) = failure(&e);
                        refused.push((key, status, code));
                        break;
                    }
                }
            }
            (acknowledged, refused)
        }));
    }
    let deleter = {
        let (s3, b, start) = (deleter.clone(), b.to_string(), Arc::clone(&start));
        tokio::spawn(async move {
            start.wait().await;
            for _ in 0..delay {
                let _ = s3.head_bucket().bucket(&b).send().await;
            }
            s3.delete_bucket()
                .bucket(&b)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| failure(&e))
        })
    };
    let mut out = RaceOutcome {
        acknowledged: Vec::new(),
        refused: Vec::new(),
        deleted: deleter.await.expect("the deleting task panicked"),
    };
    for w in writers {
        let (acknowledged, refused) = w.await.expect("a writer task panicked");
        out.acknowledged.extend(acknowledged);
        out.refused.extend(refused);
    }
    out
}
