//! (d) A mixed load over both gateways: several clients PUT, overwrite, GET, DELETE and LIST a
//! bounded set of keys for `SDFBS_TEST_LOAD_SECS` seconds (60 by default), each request sent
//! through either gateway at random; afterwards every acknowledged write that was not
//! overwritten or deleted later reads back with its bytes, through both gateways.
//!
//! Two kinds of keys make the checks exact:
//! * each client owns a few keys nobody else touches, so its own sequence of answers says what
//!   every GET and LIST must show at once (read-your-writes across gateways);
//! * a few keys are shared by all clients. Concurrent writes have no order of their own, so
//!   every PUT, DELETE and read of a shared key is recorded with its start and end time, and
//!   checked afterwards against what a linearizable store may answer: a read (or the final
//!   state) shows a write that had started before the read ended and that no acknowledged write
//!   had replaced before the read started.
//!
//! A value is known by its length and MD5 (ETag), which the GET body is hashed to and LIST
//! shows; every PUT body is random, so no two values share them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::common::{bucket, md5_hex, ok};
use crate::{clients, two_gateways};

/// Concurrent clients.
const WORKERS: usize = 8;
/// Keys each client owns.
const OWN_KEYS: usize = 6;
/// Keys all clients share.
const SHARED_KEYS: usize = 6;
/// Operations per client at most, whatever the duration.
const MAX_OPS_PER_WORKER: usize = 20_000;
/// One request (a GET with its body) may take this long before it counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// The variable setting the load's duration in seconds.
const DURATION_VAR: &str = "SDFBS_TEST_LOAD_SECS";

fn load_duration() -> Duration {
    match std::env::var(DURATION_VAR) {
        Err(_) => Duration::from_secs(60),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => panic!("{DURATION_VAR}={v:?}: give the load's duration in whole seconds"),
        },
    }
}

/// An object's content as a client can see it: its length and quoted MD5.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Value {
    len: i64,
    etag: String,
}

impl Value {
    fn of(data: &[u8]) -> Value {
        Value {
            len: data.len() as i64,
            etag: format!("\"{}\"", md5_hex(data)),
        }
    }
}

/// What a key holds: a value, or nothing.
type State = Option<Value>;

/// A request on a shared key, timed.
#[derive(Debug)]
struct Event {
    key: String,
    start: Instant,
    end: Instant,
    what: Op,
}

#[derive(Debug)]
enum Op {
    /// A PUT (`Some`) or DELETE (`None`); `acked` when answered with success.
    Write { state: State, acked: bool },
    /// A GET or a LIST that showed `state`.
    Read { state: State },
}

/// What one client did and saw.
#[derive(Default)]
struct Report {
    counts: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
    /// The states each owned key may be in (one, unless a write failed).
    owned: BTreeMap<String, Vec<State>>,
    shared: Vec<Event>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_over_both_gateways_keeps_every_acknowledged_write() {
    let Some(cluster) = two_gateways() else {
        return;
    };
    let gw = clients(&cluster);
    let b = bucket("load");
    ok(gw[0].create_bucket().bucket(&b).send().await);
    let duration = load_duration();
    let seed: u64 = rand::random();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (gw, b) = (gw.clone(), b.clone());
            tokio::spawn(worker(w, gw, b, deadline, seed.wrapping_add(w as u64)))
        })
        .collect();
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(t.await.expect("a load client panicked"));
    }
    let ran = started.elapsed();

    let mut problems: Vec<String> = reports.iter().flat_map(|r| r.failures.clone()).collect();
    let mut counts = BTreeMap::new();
    for r in &reports {
        for (op, n) in &r.counts {
            *counts.entry(*op).or_insert(0) += n;
        }
    }
    eprintln!(
        "mixed load: {ran:.1?} over {} gateways, {WORKERS} clients (seed {seed}): {counts:?}, \
         {} problems",
        gw.len(),
        problems.len()
    );

    // Every key, read through each gateway once the load is over.
    let mut finals: BTreeMap<String, State> = BTreeMap::new();
    let mut allowed: BTreeMap<String, Vec<State>> = BTreeMap::new();
    for r in &reports {
        allowed.extend(r.owned.clone());
    }
    let shared: Vec<&Event> = reports.iter().flat_map(|r| &r.shared).collect();
    for k in 0..SHARED_KEYS {
        let key = shared_key(k);
        let events: Vec<&Event> = shared.iter().copied().filter(|e| e.key == key).collect();
        problems.extend(check_shared_reads(&key, &events));
        allowed.insert(key.clone(), allowed_finals(&events));
    }
    for (key, states) in &allowed {
        for (g, s3) in gw.iter().enumerate() {
            match read(s3, &b, key).await {
                Ok(state) => {
                    if !states.contains(&state) {
                        problems.push(format!(
                            "after the load, GET {key} through gateway {g} shows {state:?}; \
                             acknowledged writes allow only {states:?}"
                        ));
                    }
                    if let Some(seen) = finals.insert(key.clone(), state.clone()) {
                        if seen != state {
                            problems.push(format!(
                                "after the load, the gateways disagree on {key}: {seen:?} \
                                 through gateway 0, {state:?} through gateway {g}"
                            ));
                        }
                    }
                }
                Err(e) => problems.push(format!("after the load, GET {key} through {g}: {e}")),
            }
        }
    }
    // The listing agrees with the objects, through each gateway.
    let want: BTreeMap<String, Value> = finals
        .iter()
        .filter_map(|(k, s)| s.clone().map(|v| (k.clone(), v)))
        .collect();
    for (g, s3) in gw.iter().enumerate() {
        match list(s3, &b, "").await {
            Ok(listed) if listed == want => {}
            Ok(listed) => problems.push(format!(
                "after the load, LIST through gateway {g} shows {listed:?}, GETs show {want:?}"
            )),
            Err(e) => problems.push(format!("after the load, LIST through gateway {g}: {e}")),
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems in the mixed load, the first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn shared_key(k: usize) -> String {
    format!("shared/{k}")
}

/// One client: random operations until `deadline` (or [`MAX_OPS_PER_WORKER`]), each through
/// a gateway picked at random.
async fn worker(w: usize, gw: Vec<Client>, b: String, deadline: Instant, seed: u64) -> Report {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = Report::default();
    let own_prefix = format!("own/{w}/");
    for k in 0..OWN_KEYS {
        report.owned.insert(format!("{own_prefix}{k}"), vec![None]);
    }
    for _ in 0..MAX_OPS_PER_WORKER {
        if Instant::now() >= deadline {
            break;
        }
        let g = rng.gen_range(0..gw.len());
        let s3 = &gw[g];
        let shared = rng.gen_bool(0.5);
        let key = if shared {
            shared_key(rng.gen_range(0..SHARED_KEYS))
        } else {
            format!("{own_prefix}{}", rng.gen_range(0..OWN_KEYS))
        };
        let roll = rng.gen_range(0..100);
        let start = Instant::now();
        match roll {
            0..=34 => {
                let data = random_body(&mut rng);
                let state = Some(Value::of(&data));
                let r = put(s3, &b, &key, data).await;
                *report.counts.entry("PUT").or_default() += 1;
                let acked = match r {
                    Ok(etag) if Some(&etag) == state.as_ref().map(|v| &v.etag) => true,
                    Ok(etag) => {
                        report.failures.push(format!(
                            "PUT {key} through {g}: ETag {etag}, want {state:?}"
                        ));
                        true
                    }
                    Err(e) => {
                        report.failures.push(format!("PUT {key} through {g}: {e}"));
                        false
                    }
                };
                report.wrote(shared, key, state, acked, start);
            }
            35..=64 => {
                let r = read(s3, &b, &key).await;
                *report.counts.entry("GET").or_default() += 1;
                match r {
                    Ok(state) => report.saw(shared, key, state, start, &format!("GET through {g}")),
                    Err(e) => report.failures.push(format!("GET {key} through {g}: {e}")),
                }
            }
            65..=79 => {
                let r = timed(s3.delete_object().bucket(&b).key(&key).send()).await;
                *report.counts.entry("DELETE").or_default() += 1;
                let acked = match r {
                    Ok(_) => true,
                    Err(e) => {
                        report
                            .failures
                            .push(format!("DELETE {key} through {g}: {e}"));
                        false
                    }
                };
                report.wrote(shared, key, None, acked, start);
            }
            _ => {
                let prefix = if shared {
                    "shared/"
                } else {
                    own_prefix.as_str()
                };
                let keys: Vec<String> = if shared {
                    (0..SHARED_KEYS).map(shared_key).collect()
                } else {
                    (0..OWN_KEYS).map(|k| format!("{own_prefix}{k}")).collect()
                };
                let r = list(s3, &b, prefix).await;
                *report.counts.entry("LIST").or_default() += 1;
                match r {
                    Ok(listed) => {
                        if let Some(stray) = listed.keys().find(|k| !keys.contains(k)) {
                            report
                                .failures
                                .push(format!("LIST {prefix} through {g} shows {stray}"));
                        }
                        for key in keys {
                            let state = listed.get(&key).cloned();
                            report.saw(shared, key, state, start, &format!("LIST through {g}"));
                        }
                    }
                    Err(e) => report
                        .failures
                        .push(format!("LIST {prefix} through {g}: {e}")),
                }
            }
        }
    }
    report
}

impl Report {
    /// Records a PUT (`Some`) or DELETE (`None`) of `key` that began at `start`.
    fn wrote(&mut self, shared: bool, key: String, state: State, acked: bool, start: Instant) {
        if shared {
            self.shared.push(Event {
                key,
                start,
                end: Instant::now(),
                what: Op::Write { state, acked },
            });
        } else if let Some(states) = self.owned.get_mut(&key) {
            if acked {
                *states = vec![state];
            } else if !states.contains(&state) {
                // A failed write may or may not have taken effect.
                states.push(state);
            }
        }
    }

    /// Records that `how` (a GET or LIST begun at `start`) showed `state` for `key`; an owned
    /// key must show what this client's own answers say it holds.
    fn saw(&mut self, shared: bool, key: String, state: State, start: Instant, how: &str) {
        if shared {
            self.shared.push(Event {
                key,
                start,
                end: Instant::now(),
                what: Op::Read { state },
            });
        } else if let Some(states) = self.owned.get_mut(&key) {
            if !states.contains(&state) {
                self.failures.push(format!(
                    "{how}: {key} shows {state:?}, but its last acknowledged write left {states:?}"
                ));
            }
            *states = vec![state];
        }
    }
}

/// A random body: mostly small, some of a few hundred KiB, a few over one chunk (1 MiB).
fn random_body(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.gen_range(0..100) {
        0..=59 => rng.gen_range(0..=8 << 10),
        60..=89 => rng.gen_range(8 << 10..=256 << 10),
        _ => rng.gen_range(1 << 20..=5 << 19),
    };
    let mut data = vec![0; len];
    rng.fill_bytes(&mut data);
    data
}

/// Runs an SDK call with [`OP_TIMEOUT`]; an error is described as a client sees it.
async fn timed<T, E>(
    call: impl std::future::Future<Output = Result<T, aws_sdk_s3::error::SdkError<E>>>,
) -> Result<T, String>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Err(_) => Err(format!("no answer within {OP_TIMEOUT:?}")),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(describe(&e)),
    }
}

fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &aws_sdk_s3::error::SdkError<E>,
) -> String {
    match e.raw_response().map(|r| r.status().as_u16()) {
        Some(status) => format!("{status} {}", e.code().unwrap_or_default()),
        None => format!(
            "no S3 answer: {}",
            aws_smithy_types::error::display::DisplayErrorContext(e)
        ),
    }
}

/// PUT; answers the ETag.
async fn put(s3: &Client, b: &str, key: &str, data: Vec<u8>) -> Result<String, String> {
    let call = s3
        .put_object()
        .bucket(b)
        .key(key)
        .body(ByteStream::from(data))
        .send();
    let out = timed(call).await?;
    Ok(out.e_tag().unwrap_or_default().to_string())
}

/// GET with its whole body: the value (its ETag header checked against the bytes), or None
/// for 404 NoSuchKey.
async fn read(s3: &Client, b: &str, key: &str) -> Result<State, String> {
    let call = async {
        match s3.get_object().bucket(b).key(key).send().await {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let body = out.body.collect().await.map_err(|e| e.to_string())?;
                let value = Value::of(&body.into_bytes());
                if value.etag != etag {
                    return Err(format!("body MD5 {} under ETag {etag}", value.etag));
                }
                Ok(Some(value))
            }
            Err(e) if e.code() == Some("NoSuchKey") => Ok(None),
            Err(e) => Err(describe(&e)),
        }
    };
    tokio::time::timeout(OP_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {OP_TIMEOUT:?}")))
}

/// ListObjectsV2 of `prefix` (one page: the key space is small): key to value.
async fn list(s3: &Client, b: &str, prefix: &str) -> Result<BTreeMap<String, Value>, String> {
    let out = timed(s3.list_objects_v2().bucket(b).prefix(prefix).send()).await?;
    Ok(out
        .contents()
        .iter()
        .map(|o| {
            let value = Value {
                len: o.size().unwrap_or(-1),
                etag: o.e_tag().unwrap_or_default().to_string(),
            };
            (o.key().unwrap_or_default().to_string(), value)
        })
        .collect())
}

/// The writes of a shared key: (state, start, end, acknowledged).
fn writes<'a>(events: &[&'a Event]) -> Vec<(&'a State, Instant, Instant, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.what {
            Op::Write { state, acked } => Some((state, e.start, e.end, *acked)),
            Op::Read { .. } => None,
        })
        .collect()
}

/// Whether a write ending at `end` was surely replaced before `before`: an acknowledged write
/// started after it ended and ended before `before`.
fn replaced(
    writes: &[(&State, Instant, Instant, bool)],
    end: Option<Instant>,
    before: Instant,
) -> bool {
    writes
        .iter()
        .any(|(_, s, e, acked)| *acked && end.is_none_or(|end| *s > end) && *e < before)
}

/// The reads of a shared key that no linearizable store could have answered.
fn check_shared_reads(key: &str, events: &[&Event]) -> Vec<String> {
    let writes = writes(events);
    let mut problems = Vec::new();
    for e in events {
        let Op::Read { state } = &e.what else {
            continue;
        };
        // The key's initial absence, or a write of this state that began before the read
        // ended and was not surely replaced before the read began.
        let initial = state.is_none() && !replaced(&writes, None, e.start);
        let written = writes.iter().any(|(s, ws, we, acked)| {
            *s == state && *ws < e.end && (!*acked || !replaced(&writes, Some(*we), e.start))
        });
        if !(initial || written) {
            problems.push(format!(
                "{key}: a read at {:?}..{:?} (since the first write) showed {state:?}, which no \
                 write could have left then",
                e.start.saturating_duration_since(first_start(events)),
                e.end.saturating_duration_since(first_start(events)),
            ));
        }
    }
    problems
}

fn first_start(events: &[&Event]) -> Instant {
    events
        .iter()
        .map(|e| e.start)
        .min()
        .unwrap_or_else(Instant::now)
}

/// The states a shared key may show after the load: those of writes no acknowledged write
/// started after (a failed write counts as possibly applied), or its initial absence if no
/// write was acknowledged.
fn allowed_finals(events: &[&Event]) -> Vec<State> {
    let writes = writes(events);
    let after_all = events
        .iter()
        .map(|e| e.end)
        .max()
        .unwrap_or_else(Instant::now)
        + Duration::from_millis(1);
    let mut states: Vec<State> = Vec::new();
    if !writes.iter().any(|w| w.3) {
        states.push(None);
    }
    for (state, _, end, acked) in &writes {
        let last = !*acked || !replaced(&writes, Some(*end), after_all);
        if last && !states.contains(state) {
            states.push((*state).clone());
        }
    }
    states
}

/// The history check itself, on made-up histories: it must accept what a linearizable store
/// may answer and reject a stale read or a lost write, or the load test proves nothing.
#[test]
fn the_history_check_rejects_stale_reads_and_lost_writes() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let value = |n: u8| Some(Value::of(&[n]));
    let write = |state: State, start, end, acked| Event {
        key: "k".into(),
        start: at(start),
        end: at(end),
        what: Op::Write { state, acked },
    };
    let read = |state: State, start, end| Event {
        key: "k".into(),
        start: at(start),
        end: at(end),
        what: Op::Read { state },
    };
    let check = |events: &[Event]| {
        let refs: Vec<&Event> = events.iter().collect();
        (check_shared_reads("k", &refs).len(), allowed_finals(&refs))
    };

    // One after the other: A, then B. A read after B must show B; only B may remain.
    let mut h = vec![write(value(1), 0, 10, true), write(value(2), 20, 30, true)];
    h.push(read(value(2), 40, 50));
    assert_eq!(check(&h), (0, vec![value(2)]));
    h.push(read(value(1), 40, 50));
    assert_eq!(
        check(&h).0,
        1,
        "a read of A after B was acknowledged is stale"
    );
    h.push(read(None, 5, 8));
    assert_eq!(check(&h).0, 1, "absent while A is in flight is fine");
    h.push(read(None, 12, 15));
    assert_eq!(check(&h).0, 2, "absent after A was acknowledged is stale");

    // Overlapping writes may land in either order; a read during both may show either.
    let h = vec![
        write(value(1), 0, 30, true),
        write(value(2), 10, 20, true),
        read(value(1), 15, 16),
        read(value(2), 15, 16),
    ];
    assert_eq!(check(&h), (0, vec![value(1), value(2)]));

    // A delete after a write: absent is the only end state; a failed write may have landed.
    let h = vec![
        write(value(1), 0, 10, true),
        write(None, 20, 30, true),
        write(value(3), 40, 50, false),
    ];
    assert_eq!(check(&h), (0, vec![None, value(3)]));
    // A value nobody wrote.
    let h = vec![write(value(1), 0, 10, true), read(value(9), 20, 30)];
    assert_eq!(check(&h).0, 1);
}
