//! rclone: mkdir, copy, sync (with deletions), check, lsf, cat with --offset/--count,
//! server-side copy, md5sum, a 64 MiB multipart upload, delete and purge.

use std::path::Path;

use sdfbs_compat_tests::data::read_range;
use sdfbs_compat_tests::{
    require_tool, sha256_file, sha256_hex, write_random_file, CliTool, Cluster, ClusterOptions,
    Rclone,
};

const MIB: u64 = 1 << 20;

fn lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(String::from).collect();
    v.sort();
    v
}

fn make_tree(root: &Path) {
    for (i, (rel, size)) in [
        ("one.txt", 100),
        ("dir/two.bin", 2 * MIB + 1),
        ("dir/sub dir/three.bin", MIB),
        ("ünïcode.txt", 10),
    ]
    .iter()
    .enumerate()
    {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_random_file(&p, *size, 50 + i as u64).unwrap();
    }
}

#[test]
fn rclone_end_to_end() {
    let Some(exe) = require_tool("rclone") else {
        return;
    };
    let cluster = Cluster::start(ClusterOptions::default());
    let rc = Rclone::new(exe, &cluster);
    let work = cluster.dir().join("work");
    let src = work.join("src");
    make_tree(&src);
    let src_s = src.to_str().unwrap();

    rc.ok(["mkdir", "sdfbs:rc-bucket"]);
    rc.ok(["mkdir", "sdfbs:rc-other"]);
    let buckets = lines(&rc.ok(["lsf", "sdfbs:"]));
    assert_eq!(buckets, ["rc-bucket/", "rc-other/"]);

    // copy, then check (sizes and MD5s) and lsf.
    rc.ok(["copy", src_s, "sdfbs:rc-bucket/tree"]);
    rc.ok(["check", src_s, "sdfbs:rc-bucket/tree"]);
    let listed = lines(&rc.ok(["lsf", "-R", "--files-only", "sdfbs:rc-bucket/tree"]));
    assert_eq!(
        listed,
        [
            "dir/sub dir/three.bin",
            "dir/two.bin",
            "one.txt",
            "ünïcode.txt"
        ]
    );
    let top = lines(&rc.ok(["lsf", "sdfbs:rc-bucket/tree"]));
    assert_eq!(top, ["dir/", "one.txt", "ünïcode.txt"]);

    // cat with --offset/--count.
    let two = src.join("dir/two.bin");
    for (offset, count) in [(0u64, 10u64), (MIB - 5, 10), (2 * MIB - 100, 101)] {
        let out = rc
            .cmd([
                "cat",
                "--offset",
                &offset.to_string(),
                "--count",
                &count.to_string(),
                "sdfbs:rc-bucket/tree/dir/two.bin",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.stdout,
            read_range(&two, offset, offset + count).unwrap(),
            "cat --offset {offset} --count {count}"
        );
    }

    // Server-side copy to another bucket: rclone says so in its log.
    let out = rc
        .cmd([
            "copyto",
            "-v",
            "sdfbs:rc-bucket/tree/dir/two.bin",
            "sdfbs:rc-other/copied.bin",
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("server-side copy"),
        "not a server-side copy: {log}"
    );
    let copied = rc
        .cmd(["cat", "sdfbs:rc-other/copied.bin"])
        .output()
        .unwrap();
    assert_eq!(sha256_hex(&copied.stdout), sha256_file(&two).unwrap());

    // sync with a deletion and a change.
    std::fs::remove_file(src.join("one.txt")).unwrap();
    write_random_file(&src.join("ünïcode.txt"), 20, 99).unwrap();
    rc.ok(["sync", src_s, "sdfbs:rc-bucket/tree"]);
    rc.ok(["check", src_s, "sdfbs:rc-bucket/tree"]);
    let listed = lines(&rc.ok(["lsf", "-R", "--files-only", "sdfbs:rc-bucket/tree"]));
    assert_eq!(
        listed,
        ["dir/sub dir/three.bin", "dir/two.bin", "ünïcode.txt"]
    );
    let back = work.join("back");
    rc.ok(["copy", "sdfbs:rc-bucket/tree", back.to_str().unwrap()]);
    rc.ok(["check", src_s, back.to_str().unwrap()]);

    // A 64 MiB file as a multipart upload (5 MiB parts).
    let big = work.join("big.bin");
    let digest = write_random_file(&big, 64 * MIB, 64).unwrap();
    rc.ok([
        "copyto",
        "--s3-upload-cutoff",
        "8M",
        "--s3-chunk-size",
        "5M",
        big.to_str().unwrap(),
        "sdfbs:rc-bucket/big.bin",
    ]);
    let sums = rc.ok(["md5sum", "sdfbs:rc-bucket/big.bin"]);
    let local_md5 = {
        use md5::{Digest, Md5};
        hex::encode(Md5::digest(std::fs::read(&big).unwrap()))
    };
    assert!(sums.starts_with(&local_md5), "md5sum {sums} vs {local_md5}");
    let big_back = work.join("big.back");
    rc.ok([
        "copyto",
        "sdfbs:rc-bucket/big.bin",
        big_back.to_str().unwrap(),
    ]);
    assert_eq!(sha256_file(&big_back).unwrap(), digest);
    let out = rc
        .cmd([
            "cat",
            "--offset",
            &(30 * MIB).to_string(),
            "--count",
            "1000",
            "sdfbs:rc-bucket/big.bin",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.stdout,
        read_range(&big, 30 * MIB, 30 * MIB + 1000).unwrap()
    );

    // delete and purge.
    rc.ok(["delete", "sdfbs:rc-bucket/big.bin"]);
    rc.ok(["purge", "sdfbs:rc-bucket"]);
    let buckets = lines(&rc.ok(["lsf", "sdfbs:"]));
    assert_eq!(buckets, ["rc-other/"]);
}
