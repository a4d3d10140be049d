//! s3cmd: mb, put, get, ls, la, info, del, a multipart put, rb.

use sdfbs_compat_tests::{
    require_tool, sha256_file, write_random_file, CliTool, Cluster, ClusterOptions, S3cmd,
};

const MIB: u64 = 1 << 20;

#[test]
fn s3cmd_end_to_end() {
    let Some(exe) = require_tool("s3cmd") else {
        return;
    };
    let cluster = Cluster::start(ClusterOptions::default());
    let s3cmd = S3cmd::new(exe, &cluster);
    let work = cluster.dir().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let small = work.join("small file.txt");
    let small_digest = write_random_file(&small, 5000, 1).unwrap();
    let big = work.join("big.bin");
    let big_digest = write_random_file(&big, 12 * MIB + 3, 2).unwrap();
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();

    s3cmd.ok(["mb", "s3://s3cmd-bucket"]);
    assert!(s3cmd.ok(["ls"]).contains("s3://s3cmd-bucket"));

    s3cmd.ok(["put", &p(&small), "s3://s3cmd-bucket/docs/small file.txt"]);
    // Multipart with 5 MiB parts: 3 parts.
    let put = s3cmd.ok([
        "put",
        "--multipart-chunk-size-mb=5",
        "--progress",
        &p(&big),
        "s3://s3cmd-bucket/big.bin",
    ]);
    assert!(
        put.contains("part 3 of 3"),
        "a 3-part upload expected: {put}"
    );
    let info = s3cmd.ok(["info", "s3://s3cmd-bucket/big.bin"]);
    assert!(
        info.contains(&format!("File size: {}", 12 * MIB + 3)),
        "{info}"
    );
    // s3cmd shows the MD5 it stored in its own metadata for multipart objects.
    assert!(
        info.contains(&format!("MD5 sum:   {}", {
            use md5::{Digest, Md5};
            hex::encode(Md5::digest(std::fs::read(&big).unwrap()))
        })),
        "{info}"
    );

    let ls = s3cmd.ok(["ls", "s3://s3cmd-bucket"]);
    assert!(
        ls.contains("DIR") && ls.contains("s3://s3cmd-bucket/docs/"),
        "{ls}"
    );
    assert!(ls.contains("s3://s3cmd-bucket/big.bin"), "{ls}");
    let la = s3cmd.ok(["la", "-r"]);
    assert!(la.contains("s3://s3cmd-bucket/docs/small file.txt"), "{la}");

    let small_back = work.join("small.back");
    let big_back = work.join("big.back");
    s3cmd.ok([
        "get",
        "s3://s3cmd-bucket/docs/small file.txt",
        &p(&small_back),
    ]);
    s3cmd.ok(["get", "s3://s3cmd-bucket/big.bin", &p(&big_back)]);
    assert_eq!(sha256_file(&small_back).unwrap(), small_digest);
    assert_eq!(sha256_file(&big_back).unwrap(), big_digest);

    s3cmd.ok(["del", "s3://s3cmd-bucket/big.bin"]);
    s3cmd.ok(["del", "s3://s3cmd-bucket/docs/small file.txt"]);
    let ls = s3cmd.ok(["ls", "-r", "s3://s3cmd-bucket"]);
    assert!(ls.trim().is_empty(), "left: {ls}");
    s3cmd.ok(["rb", "s3://s3cmd-bucket"]);
    assert!(!s3cmd.ok(["ls"]).contains("s3cmd-bucket"));
}
