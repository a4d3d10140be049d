//! ListObjects (v1, marker) and ListObjectsV2 (prefix, delimiter, max-keys, continuation-token,
//! start-after, fetch-owner, encoding-type=url).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::EncodingType;
use sdfbs_compat_tests::{on_each_backend, Cluster, ClusterOptions, Metadata};

use crate::common::{bucket, client, ok, Checksums};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(
    list_objects_v1_and_v2,
    listing_past_the_default_page_of_1000
);

const KEYS: &[&str] = &[
    "a/1.txt",
    "a/2.txt",
    "a/b/3.txt",
    "a/b/c/4.txt",
    "b/5.txt",
    "c.txt",
    "d e/6 7.txt",
    "z+plus&amp.txt",
    "ü/8.txt",
];

/// Form-style percent decoding (`+` is a space), which is how clients decode
/// `encoding-type=url` listings.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

async fn list_objects_v1_and_v2(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("listing");
    ok(s3.create_bucket().bucket(&b).send().await);
    for k in KEYS {
        ok(s3
            .put_object()
            .bucket(&b)
            .key(*k)
            .body(ByteStream::from(k.as_bytes().to_vec()))
            .send()
            .await);
    }

    // Everything, in key (UTF-8 byte) order, with sizes and ETags.
    let all = ok(s3.list_objects_v2().bucket(&b).send().await);
    let keys: Vec<&str> = all.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, KEYS);
    assert_eq!(all.key_count(), Some(KEYS.len() as i32));
    assert_eq!(all.is_truncated(), Some(false));
    for o in all.contents() {
        assert_eq!(o.size(), Some(o.key().unwrap().len() as i64));
        assert!(o.e_tag().is_some() && o.last_modified().is_some());
        assert!(o.owner().is_none(), "owner only with fetch-owner");
    }

    // Delimiter: folders become common prefixes.
    let top = ok(s3.list_objects_v2().bucket(&b).delimiter("/").send().await);
    let keys: Vec<&str> = top.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<&str> = top
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(keys, ["c.txt", "z+plus&amp.txt"]);
    assert_eq!(prefixes, ["a/", "b/", "d e/", "ü/"]);
    let a = ok(s3
        .list_objects_v2()
        .bucket(&b)
        .prefix("a/")
        .delimiter("/")
        .send()
        .await);
    let keys: Vec<&str> = a.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<&str> = a
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(keys, ["a/1.txt", "a/2.txt"]);
    assert_eq!(prefixes, ["a/b/"]);
    let none = ok(s3
        .list_objects_v2()
        .bucket(&b)
        .prefix("nothing")
        .send()
        .await);
    assert!(none.contents().is_empty());
    assert_eq!(none.key_count(), Some(0));

    // Pagination by continuation token, 2 at a time; prefixes count toward max-keys.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = ok(s3
            .list_objects_v2()
            .bucket(&b)
            .max_keys(2)
            .delimiter("/")
            .set_continuation_token(token.clone())
            .send()
            .await);
        pages += 1;
        assert!(page.key_count().unwrap_or(0) <= 2);
        seen.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .map(String::from),
        );
        seen.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix())
                .map(String::from),
        );
        if page.is_truncated() == Some(true) {
            token = page.next_continuation_token().map(String::from);
            assert!(token.is_some(), "truncated page without a token");
        } else {
            break;
        }
        assert!(pages < 20, "pagination does not end");
    }
    seen.sort();
    assert_eq!(seen, ["a/", "b/", "c.txt", "d e/", "z+plus&amp.txt", "ü/"]);
    assert_eq!(pages, 3);

    // start-after.
    let after = ok(s3
        .list_objects_v2()
        .bucket(&b)
        .start_after("b/5.txt")
        .send()
        .await);
    let keys: Vec<&str> = after.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, &KEYS[5..]);

    // fetch-owner.
    let owned = ok(s3
        .list_objects_v2()
        .bucket(&b)
        .fetch_owner(true)
        .max_keys(1)
        .send()
        .await);
    let owner = owned.contents()[0]
        .owner()
        .expect("fetch-owner gives an owner");
    assert!(owner.id().is_some_and(|id| !id.is_empty()));

    // encoding-type=url: keys, prefixes come back encoded and decode to the originals.
    let enc = ok(s3
        .list_objects_v2()
        .bucket(&b)
        .encoding_type(EncodingType::Url)
        .send()
        .await);
    assert_eq!(enc.encoding_type(), Some(&EncodingType::Url));
    let raw: Vec<&str> = enc.contents().iter().filter_map(|o| o.key()).collect();
    for k in &raw {
        assert!(k.is_ascii() && !k.contains(' '), "not URL-encoded: {k:?}");
    }
    let decoded: Vec<String> = raw.iter().map(|k| url_decode(k)).collect();
    assert_eq!(decoded, KEYS);
    let enc = ok(s3
        .list_objects_v2()
        .bucket(&b)
        .delimiter("/")
        .encoding_type(EncodingType::Url)
        .send()
        .await);
    let prefixes: Vec<String> = enc
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .map(url_decode)
        .collect();
    assert_eq!(prefixes, ["a/", "b/", "d e/", "ü/"]);

    // ListObjects v1 with marker and max-keys.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = ok(s3
            .list_objects()
            .bucket(&b)
            .max_keys(4)
            .set_marker(marker.clone())
            .send()
            .await);
        let keys: Vec<String> = page
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .map(String::from)
            .collect();
        assert!(keys.len() <= 4);
        seen.extend(keys.iter().cloned());
        if page.is_truncated() == Some(true) {
            marker = keys.last().cloned();
        } else {
            break;
        }
        assert!(seen.len() <= KEYS.len(), "v1 pagination repeats keys");
    }
    assert_eq!(seen, KEYS);
    let v1 = ok(s3
        .list_objects()
        .bucket(&b)
        .prefix("a/")
        .delimiter("/")
        .marker("a/1.txt")
        .send()
        .await);
    let keys: Vec<&str> = v1.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<&str> = v1
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(keys, ["a/2.txt"]);
    assert_eq!(prefixes, ["a/b/"]);
}

async fn listing_past_the_default_page_of_1000(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::WhenRequired);
    let b = bucket("many");
    ok(s3.create_bucket().bucket(&b).send().await);
    // Empty objects: this exercises listing, not the data path.
    let n = 1003usize;
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (s3, b, sem) = (s3.clone(), b.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            ok(s3
                .put_object()
                .bucket(&b)
                .key(format!("k{i:05}"))
                .body(ByteStream::from_static(b""))
                .send()
                .await);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let first = ok(s3.list_objects_v2().bucket(&b).send().await);
    assert_eq!(first.contents().len(), 1000);
    assert_eq!(first.is_truncated(), Some(true));
    assert_eq!(first.contents()[999].key(), Some("k00999"));
    let rest = ok(s3
        .list_objects_v2()
        .bucket(&b)
        .set_continuation_token(first.next_continuation_token().map(String::from))
        .send()
        .await);
    let keys: Vec<&str> = rest.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["k01000", "k01001", "k01002"]);
    assert_eq!(rest.is_truncated(), Some(false));
}
