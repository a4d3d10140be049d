//! Listing: prefixes, delimiters, start-after/continuation, max-keys, byte order, long keys.

use super::util::*;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub async fn list_prefix_and_delimiter_combinations(s: Store) {
    let b = new_bucket(&s, "b").await;
    let keys = strings(&[
        "a", "a/b", "a/b/c", "a/c", "a/d/e", "ab", "b/x", "b/y/z", "c", "x--y", "x--z--w", "x-q",
    ]);
    put_keys(&s, &b, &keys).await;
    let (k, p, pg) = page(&s, &b, query("", None, None, 1000)).await;
    assert_eq!(k, keys);
    assert!(p.is_empty());
    assert!(!pg.is_truncated);
    assert_eq!(pg.next_start_after, None);

    let (k, p, _) = page(&s, &b, query("", Some("/"), None, 1000)).await;
    assert_eq!(k, strings(&["a", "ab", "c", "x--y", "x--z--w", "x-q"]));
    assert_eq!(p, strings(&["a/", "b/"]));

    let (k, p, _) = page(&s, &b, query("a/", Some("/"), None, 1000)).await;
    assert_eq!(k, strings(&["a/b", "a/c"]));
    assert_eq!(p, strings(&["a/b/", "a/d/"]));

    let (k, p, _) = page(&s, &b, query("a", Some("/"), None, 1000)).await;
    assert_eq!(k, strings(&["a", "ab"]));
    assert_eq!(p, strings(&["a/"]));

    let (k, p, _) = page(&s, &b, query("a/b", None, None, 1000)).await;
    assert_eq!(k, strings(&["a/b", "a/b/c"]));
    assert!(p.is_empty());

    let (k, p, pg) = page(&s, &b, query("zz", Some("/"), None, 1000)).await;
    assert!(k.is_empty() && p.is_empty() && !pg.is_truncated);

    // A multi-character delimiter.
    let (k, p, _) = page(&s, &b, query("x", Some("--"), None, 1000)).await;
    assert_eq!(k, strings(&["x-q"]));
    assert_eq!(p, strings(&["x--"]));

    // A delimiter that occurs nowhere lists plainly.
    let (k, p, _) = page(&s, &b, query("a/", Some("#"), None, 1000)).await;
    assert_eq!(k, strings(&["a/b", "a/b/c", "a/c", "a/d/e"]));
    assert!(p.is_empty());

    // Pages of one across a prefix and a common prefix.
    let (k, p, pg) = page(&s, &b, query("b/", Some("/"), None, 1)).await;
    assert_eq!((k, p), (strings(&["b/x"]), vec![]));
    assert!(pg.is_truncated);
    assert_eq!(pg.next_start_after.as_deref(), Some("b/x"));
    let (k, p, pg) = page(&s, &b, query("b/", Some("/"), Some("b/x"), 1)).await;
    assert_eq!((k, p), (vec![], strings(&["b/y/"])));
    assert!(!pg.is_truncated, "nothing follows b/y/");
}

pub async fn list_special_keys_in_byte_order(s: Store) {
    let b = new_bucket(&s, "b").await;
    let mut keys = strings(&[
        "a b",
        "a+b",
        "a%2Fb",
        "a/b",
        "a=b",
        "A",
        "z",
        "é",
        "ü/x",
        "日本/語",
        "日本",
        "😀",
        "\u{7f}",
        "a~",
        "a b/c d",
        "100%",
        "+",
        " ",
        "a\tb",
    ]);
    put_keys(&s, &b, &keys).await;
    keys.sort(); // String order is UTF-8 byte order.
    let (listed, prefixes, _) = list_all(&s, &b, "", None, 4).await;
    assert_eq!(listed, keys);
    assert!(prefixes.is_empty());
    for k in &keys {
        assert_eq!(s.get_object(&b, k).await.unwrap().unwrap().key, *k);
    }
    let (k, p, _) = page(&s, &b, query("", Some("/"), None, 1000)).await;
    assert!(p == strings(&["a b/", "a/", "ü/", "日本/"]), "{p:?}");
    assert!(!k.iter().any(|k| k.contains('/')));
    let (k, _, _) = page(&s, &b, query("日本", None, None, 1000)).await;
    assert_eq!(k, strings(&["日本", "日本/語"]));
    let (k, p, _) = page(&s, &b, query("a", Some("b"), None, 1000)).await;
    assert_eq!(k, strings(&["a~"]));
    assert_eq!(
        p,
        strings(&["a b", "a%2Fb", "a+b", "a/b", "a=b", "a\tb"])
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
}

pub async fn list_long_keys(s: Store) {
    let b = new_bucket(&s, "b").await;
    let k1 = format!("{}1", "x".repeat(1023));
    let k2 = format!("{}2", "x".repeat(1023));
    let k3 = format!("{}/{}", "y".repeat(500), "é".repeat(261)); // 500 + 1 + 522 = 1023 bytes
    let k4 = "日".repeat(341); // 1023 bytes
    let mut keys = vec![k1.clone(), k2.clone(), k3.clone(), k4.clone()];
    put_keys(&s, &b, &keys).await;
    keys.sort();
    assert_eq!(k1.len(), 1024);
    let (listed, _, _) = list_all(&s, &b, "", None, 1).await;
    assert_eq!(listed, keys);
    let (k, p, _) = page(&s, &b, query("", Some("/"), None, 10)).await;
    assert_eq!(p, [format!("{}/", "y".repeat(500))]);
    assert_eq!(k.len(), 3);
    let (k, _, _) = page(&s, &b, query(&k1[..1023], None, Some(&k1), 10)).await;
    assert_eq!(k, std::slice::from_ref(&k2));
    assert_eq!(s.get_object(&b, &k4).await.unwrap().unwrap().key, k4);
}

pub async fn list_2500_keys_in_pages(s: Store) {
    let b = new_bucket(&s, "b").await;
    let keys: Vec<String> = (0..2500).map(|i| format!("data/{i:05}.bin")).collect();
    put_keys(&s, &b, &keys).await;
    let (listed, prefixes, pages) = list_all(&s, &b, "", None, 1000).await;
    assert_eq!(pages, 3);
    assert_eq!(listed, keys);
    assert!(prefixes.is_empty());
    let first = s
        .list_objects(&b, &query("", None, None, 1000))
        .await
        .unwrap();
    assert!(first.is_truncated);
    assert_eq!(first.objects.len(), 1000);
    assert_eq!(first.next_start_after.as_deref(), Some(keys[999].as_str()));
    let last = s
        .list_objects(&b, &query("", None, Some(&keys[1999]), 1000))
        .await
        .unwrap();
    assert_eq!(last.objects.len(), 500);
    assert!(!last.is_truncated);
    // Exactly max-keys left: not truncated.
    let exact = s
        .list_objects(&b, &query("", None, Some(&keys[1499]), 1000))
        .await
        .unwrap();
    assert_eq!(exact.objects.len(), 1000);
    assert!(!exact.is_truncated);
    // Folded: one common prefix however many keys are under it.
    let (k, p, pg) = page(&s, &b, query("", Some("/"), None, 1000)).await;
    assert!(k.is_empty());
    assert_eq!(p, ["data/"]);
    assert!(!pg.is_truncated);
}

pub async fn list_folded_prefixes_across_pages(s: Store) {
    let b = new_bucket(&s, "b").await;
    let mut keys = Vec::new();
    for d in 0..7 {
        for f in 0..5 {
            keys.push(format!("d{d}/f{f}"));
        }
        keys.push(format!("d{d}"));
        keys.push(format!("d{d}/sub/deep"));
    }
    put_keys(&s, &b, &keys).await;
    for max in [1, 2, 3, 5, 1000] {
        let (k, p, _) = list_all(&s, &b, "", Some("/"), max).await;
        assert_eq!(
            k,
            (0..7).map(|d| format!("d{d}")).collect::<Vec<_>>(),
            "max {max}"
        );
        assert_eq!(
            p,
            (0..7).map(|d| format!("d{d}/")).collect::<Vec<_>>(),
            "max {max}"
        );
        let (k, p, _) = list_all(&s, &b, "d3/", Some("/"), max).await;
        assert_eq!(k, (0..5).map(|f| format!("d3/f{f}")).collect::<Vec<_>>());
        assert_eq!(p, ["d3/sub/"]);
    }
    // A page that ends on a common prefix continues after everything under it.
    let p1 = s
        .list_objects(&b, &query("", Some("/"), None, 2))
        .await
        .unwrap();
    assert_eq!(p1.next_start_after.as_deref(), Some("d0/"));
    let p2 = s
        .list_objects(&b, &query("", Some("/"), Some("d0/"), 2))
        .await
        .unwrap();
    assert_eq!(
        p2.objects
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        ["d1"]
    );
    assert_eq!(p2.common_prefixes, ["d1/"]);
}

pub async fn list_start_after_and_max_keys_edges(s: Store) {
    let b = new_bucket(&s, "b").await;
    let keys = strings(&["a/1", "a/2", "b", "c/1", "d"]);
    put_keys(&s, &b, &keys).await;
    // max-keys 0 returns nothing.
    let p = s.list_objects(&b, &query("", None, None, 0)).await.unwrap();
    assert!(p.objects.is_empty() && p.common_prefixes.is_empty());
    // start-after before the prefix: from the prefix.
    let (k, _, _) = page(&s, &b, query("c", None, Some("a"), 10)).await;
    assert_eq!(k, ["c/1"]);
    // start-after not itself a key.
    let (k, _, _) = page(&s, &b, query("", None, Some("a/15"), 10)).await;
    assert_eq!(k, ["a/2", "b", "c/1", "d"]);
    // start-after past the prefix's keys.
    let (k, p, pg) = page(&s, &b, query("a/", None, Some("a/9"), 10)).await;
    assert!(k.is_empty() && p.is_empty() && !pg.is_truncated);
    // start-after past everything.
    let (k, _, _) = page(&s, &b, query("", None, Some("zzz"), 10)).await;
    assert!(k.is_empty());
    // start-after beyond the whole prefix range (bounds that would cross).
    for sa in ["b", "c", "\u{10FFFF}"] {
        let (k, p, pg) = page(&s, &b, query("a", Some("/"), Some(sa), 10)).await;
        assert!(
            k.is_empty() && p.is_empty() && !pg.is_truncated,
            "start-after {sa:?}"
        );
    }
    // start-after inside a folded prefix: the prefix (not greater) is not repeated.
    let (k, p, _) = page(&s, &b, query("", Some("/"), Some("a/1"), 10)).await;
    assert_eq!(k, ["b", "d"]);
    assert_eq!(p, ["c/"]);
    // start-after equal to a common prefix skips all of it.
    let (k, p, _) = page(&s, &b, query("", Some("/"), Some("a/"), 10)).await;
    assert_eq!(k, ["b", "d"]);
    assert_eq!(p, ["c/"]);
}

pub async fn list_isolated_between_buckets(s: Store) {
    let b1 = new_bucket(&s, "one").await;
    let b2 = new_bucket(&s, "two").await;
    put_keys(&s, &b1, &strings(&["k1", "shared"])).await;
    put(&s, &b2, "shared", &[chunk(77)]).await;
    let (k, _, _) = page(&s, &b2, query("", None, None, 10)).await;
    assert_eq!(k, ["shared"]);
    let (k, _, _) = page(&s, &b1, query("", None, None, 10)).await;
    assert_eq!(k, ["k1", "shared"]);
    assert!(s.get_object(&b2, "k1").await.unwrap().is_none());
    s.delete_object(&b2, "shared").await.unwrap();
    assert!(s.get_object(&b1, "shared").await.unwrap().is_some());
}
