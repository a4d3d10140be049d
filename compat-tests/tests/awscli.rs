//! aws-cli v2 (Debian's `awscli`) and v1 (PyPI, `$SDFBS_AWSCLI_V1`): mb, cp, sync, ls, rm, rb,
//! presign + curl, a large multipart upload and ranged downloads, and issue 4's 1 GiB `cp` round
//! trip, compared byte for byte. Every test runs on both metadata backends: `NAME::embedded`,
//! and `NAME::cassandra` when `SDFBS_TEST_SCYLLA` names a node.

use std::path::Path;
use std::process::Command;

use sdfbs_compat_tests::data::read_range;
use sdfbs_compat_tests::{
    on_each_backend, require_tool, run_ok, run_output, sha256_file, write_random_file, AwsCli,
    AwsCliVersion, CliTool, Cluster, ClusterOptions, Metadata,
};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(
    sync: awscli_v2,
    awscli_v1,
    awscli_v2_one_gib_round_trip,
    awscli_v2_empty_then_data_on_one_connection,
    awscli_v1_empty_then_data_on_one_connection,
    awscli_v2_get_object_attributes,
    awscli_v1_get_object_attributes,
);

const MIB: u64 = 1 << 20;

/// Makes a small tree of files; returns their relative paths.
fn make_tree(root: &Path) -> Vec<&'static str> {
    let files = [
        ("a.txt", 12),
        ("space name.txt", 1000),
        ("sub/b.bin", 3 * MIB),
        ("sub/deeper/c.bin", 9 * MIB + 5), // over the 8 MiB multipart threshold
        ("sub/deeper/empty", 0),
    ];
    for (i, (rel, size)) in files.iter().enumerate() {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_random_file(&p, *size, i as u64).unwrap();
    }
    files.iter().map(|(r, _)| *r).collect()
}

fn assert_same_tree(a: &Path, b: &Path, files: &[&str]) {
    for f in files {
        assert_eq!(
            sha256_file(&a.join(f)).unwrap(),
            sha256_file(&b.join(f)).unwrap(),
            "{f} differs"
        );
    }
}

/// Objects listed by `aws s3 ls`, as `(size, key)`: each object line is `DATE TIME SIZE KEY`
/// (the key may hold spaces); `PRE prefix/` lines are left out.
fn ls_objects(out: &str) -> Vec<(u64, String)> {
    out.lines()
        .filter_map(|l| {
            let (_date, rest) = l.trim_start().split_once(' ')?;
            let (_time, rest) = rest.trim_start().split_once(' ')?;
            let (size, key) = rest.trim_start().split_once(' ')?;
            Some((size.parse().ok()?, key.trim_start().to_string()))
        })
        .collect()
}

/// Keys listed by `aws s3 ls --recursive`, sorted.
fn ls_keys(out: &str) -> Vec<String> {
    let mut keys: Vec<String> = ls_objects(out).into_iter().map(|(_, k)| k).collect();
    keys.sort();
    keys
}

fn exercise(metadata: Metadata, version: AwsCliVersion, big_size: u64) {
    let (Some(exe), Some(curl)) = (AwsCli::find(version), require_tool("curl")) else {
        return;
    };
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let aws = AwsCli::new(exe, version, &cluster);
    let work = cluster.dir().join("work");
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let files = make_tree(&src);

    aws.ok(["s3", "mb", "s3://cli-bucket"]);
    let buckets = aws.ok(["s3", "ls"]);
    assert!(buckets.contains("cli-bucket"), "{buckets}");

    // cp up and down.
    let a = src.join("sub/deeper/c.bin");
    aws.ok([
        "s3".as_ref(),
        "cp".as_ref(),
        a.as_os_str(),
        "s3://cli-bucket/single/c.bin".as_ref(),
    ]);
    let back = work.join("c.back");
    aws.ok([
        "s3".as_ref(),
        "cp".as_ref(),
        "s3://cli-bucket/single/c.bin".as_ref(),
        back.as_os_str(),
    ]);
    assert_eq!(sha256_file(&a).unwrap(), sha256_file(&back).unwrap());

    // sync up, list, sync down into an empty directory.
    aws.ok([
        "s3".as_ref(),
        "sync".as_ref(),
        src.as_os_str(),
        "s3://cli-bucket/tree/".as_ref(),
    ]);
    let listed = ls_keys(&aws.ok(["s3", "ls", "--recursive", "s3://cli-bucket/tree/"]));
    let mut want: Vec<String> = files.iter().map(|f| format!("tree/{f}")).collect();
    want.sort();
    assert_eq!(listed, want);
    let top = aws.ok(["s3", "ls", "s3://cli-bucket/tree/"]);
    assert!(top.contains("PRE sub/"), "{top}");
    let down = work.join("down");
    aws.ok([
        "s3".as_ref(),
        "sync".as_ref(),
        "s3://cli-bucket/tree/".as_ref(),
        down.as_os_str(),
    ]);
    assert_same_tree(&src, &down, &files);

    // A second sync uploads nothing; a deletion syncs with --delete.
    let again = aws.ok([
        "s3".as_ref(),
        "sync".as_ref(),
        src.as_os_str(),
        "s3://cli-bucket/tree/".as_ref(),
    ]);
    assert!(!again.contains("upload:"), "nothing changed, yet: {again}");
    std::fs::remove_file(src.join("a.txt")).unwrap();
    aws.ok([
        "s3".as_ref(),
        "sync".as_ref(),
        "--delete".as_ref(),
        src.as_os_str(),
        "s3://cli-bucket/tree/".as_ref(),
    ]);
    let listed = ls_keys(&aws.ok(["s3", "ls", "--recursive", "s3://cli-bucket/tree/"]));
    assert!(!listed.contains(&"tree/a.txt".to_string()), "{listed:?}");
    assert_eq!(listed.len(), files.len() - 1);

    // presign + curl; a tampered signature is refused.
    let url = aws
        .ok([
            "s3",
            "presign",
            "s3://cli-bucket/tree/sub/b.bin",
            "--expires-in",
            "300",
        ])
        .trim()
        .to_string();
    let fetched = work.join("presigned.bin");
    run_ok(
        Command::new(&curl)
            .args(["-sS", "--fail", "-o"])
            .arg(&fetched)
            .arg(&url),
    );
    assert_eq!(
        sha256_file(&fetched).unwrap(),
        sha256_file(&src.join("sub/b.bin")).unwrap()
    );
    let tampered = match url.find("X-Amz-Signature=") {
        Some(i) => {
            let mut t = url.clone();
            let at = i + "X-Amz-Signature=".len();
            let c = if &t[at..at + 1] == "0" { "1" } else { "0" };
            t.replace_range(at..at + 1, c);
            t
        }
        None => panic!("presigned URL without a SigV4 signature: {url}"),
    };
    let out = run_output(
        Command::new(&curl)
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(&tampered),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");

    // A large multipart upload (8 MiB parts by default) and ranged downloads.
    let big = work.join("big.bin");
    let digest = write_random_file(&big, big_size, 200).unwrap();
    aws.ok([
        "s3".as_ref(),
        "cp".as_ref(),
        big.as_os_str(),
        "s3://cli-bucket/big.bin".as_ref(),
    ]);
    let head = aws.ok([
        "s3api",
        "head-object",
        "--bucket",
        "cli-bucket",
        "--key",
        "big.bin",
    ]);
    let head: serde_json::Value = serde_json::from_str(&head).unwrap();
    assert_eq!(head["ContentLength"].as_u64(), Some(big_size));
    let parts = big_size.div_ceil(8 * MIB);
    assert!(
        head["ETag"]
            .as_str()
            .unwrap_or("")
            .ends_with(&format!("-{parts}\"")),
        "multipart ETag expected: {head}"
    );
    let big_back = work.join("big.back");
    aws.ok([
        "s3".as_ref(),
        "cp".as_ref(),
        "s3://cli-bucket/big.bin".as_ref(),
        big_back.as_os_str(),
    ]);
    assert_eq!(sha256_file(&big_back).unwrap(), digest);
    std::fs::remove_file(&big_back).unwrap();
    for (start, end) in [
        (0, 1),
        (8 * MIB - 3, 8 * MIB + 3),
        (big_size / 2, big_size / 2 + 5 * MIB + 1),
        (big_size - 100, big_size),
    ] {
        let out = work.join("range.bin");
        aws.ok([
            "s3api".as_ref(),
            "get-object".as_ref(),
            "--bucket".as_ref(),
            "cli-bucket".as_ref(),
            "--key".as_ref(),
            "big.bin".as_ref(),
            "--range".as_ref(),
            format!("bytes={start}-{}", end - 1).as_ref(),
            out.as_os_str(),
        ]);
        assert_eq!(
            std::fs::read(&out).unwrap(),
            read_range(&big, start, end).unwrap(),
            "range {start}-{end}"
        );
    }

    // rm, rm --recursive, rb.
    aws.ok(["s3", "rm", "s3://cli-bucket/big.bin"]);
    aws.ok(["s3", "rm", "s3://cli-bucket/single/c.bin"]);
    aws.ok(["s3", "rm", "--recursive", "s3://cli-bucket/tree/"]);
    let left = aws.ok(["s3", "ls", "--recursive", "s3://cli-bucket/"]);
    assert!(left.trim().is_empty(), "left after rm: {left}");
    aws.ok(["s3", "rb", "s3://cli-bucket"]);
    assert!(!aws.ok(["s3", "ls"]).contains("cli-bucket"));
}

/// The large-transfer tests take turns: each runs a cluster plus a multi-threaded Python client
/// moving hundreds of MiB, and on a 2-core machine running them at once mostly measures
/// contention.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn awscli_v2(metadata: Metadata) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    exercise(metadata, AwsCliVersion::V2, 200 * MIB);
}

fn awscli_v1(metadata: Metadata) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    exercise(metadata, AwsCliVersion::V1, 200 * MIB);
}

/// Issue 4's acceptance transfer: `aws s3 cp` (Debian's aws-cli v2) of a 1 GiB file up and back
/// down is byte-identical. The files are compared by length and streamed SHA-256, never read
/// into memory, so the test's memory stays flat whatever the size.
fn awscli_v2_one_gib_round_trip(metadata: Metadata) {
    const SIZE: u64 = 1024 * MIB;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(exe) = AwsCli::find(AwsCliVersion::V2) else {
        return;
    };
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let aws = AwsCli::new(exe, AwsCliVersion::V2, &cluster);
    let work = cluster.dir().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let src = work.join("one-gib.bin");
    let digest = write_random_file(&src, SIZE, 1024).unwrap();

    aws.ok(["s3", "mb", "s3://gib-bucket"]);
    aws.ok([
        "s3".as_ref(),
        "cp".as_ref(),
        src.as_os_str(),
        "s3://gib-bucket/one-gib.bin".as_ref(),
    ]);
    let listed = ls_objects(&aws.ok(["s3", "ls", "s3://gib-bucket/"]));
    assert_eq!(listed, [(SIZE, "one-gib.bin".to_string())]);

    let back = work.join("one-gib.back");
    aws.ok([
        "s3".as_ref(),
        "cp".as_ref(),
        "s3://gib-bucket/one-gib.bin".as_ref(),
        back.as_os_str(),
    ]);
    assert_eq!(std::fs::metadata(&back).unwrap().len(), SIZE);
    assert_eq!(sha256_file(&back).unwrap(), digest);

    aws.ok(["s3", "rm", "s3://gib-bucket/one-gib.bin"]);
    let left = aws.ok(["s3", "ls", "--recursive", "s3://gib-bucket/"]);
    assert!(left.trim().is_empty(), "left after rm: {left}");
    aws.ok(["s3", "rb", "s3://gib-bucket"]);
}

/// The Python interpreter an aws-cli script runs with (its `#!` line).
fn python_of(aws: &Path) -> std::path::PathBuf {
    let text = std::fs::read(aws).expect("read the aws script");
    let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(first);
    let interpreter = line
        .strip_prefix("#!")
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{} has no #! line", aws.display()));
    interpreter.into()
}

/// An empty upload followed by one with a body on the same pooled connection, through each
/// aws-cli's own botocore: the gateway must not leave the connection in a state an unpatched
/// botocore misreads (it closes connections after an empty `Expect: 100-continue` request).
fn empty_then_data(metadata: Metadata, version: AwsCliVersion) {
    let Some(exe) = AwsCli::find(version) else {
        return;
    };
    let python = python_of(&exe);
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/empty_then_data.py");
    let out = run_ok(
        Command::new(python)
            .arg(script)
            .arg(&cluster.s3_url)
            .arg(&cluster.access_key)
            .arg(&cluster.secret_key)
            .arg(&cluster.region)
            .arg("reuse"),
    );
    assert_eq!(out.trim(), "ok");
}

fn awscli_v2_empty_then_data_on_one_connection(metadata: Metadata) {
    empty_then_data(metadata, AwsCliVersion::V2);
}

fn awscli_v1_empty_then_data_on_one_connection(metadata: Metadata) {
    empty_then_data(metadata, AwsCliVersion::V1);
}

/// GetObjectAttributes through each aws-cli: the attributes asked for and no others, the ETag
/// without the quotes put-object shows (as S3 answers it), Last-Modified from its header.
fn object_attributes(metadata: Metadata, version: AwsCliVersion) {
    let Some(exe) = AwsCli::find(version) else {
        return;
    };
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let aws = AwsCli::new(exe, version, &cluster);
    let file = cluster.dir().join("attrs.bin");
    write_random_file(&file, 70_000, 7).unwrap();
    aws.ok(["s3api", "create-bucket", "--bucket", "attr-bucket"]);
    let put = aws.ok([
        "s3api".as_ref(),
        "put-object".as_ref(),
        "--bucket".as_ref(),
        "attr-bucket".as_ref(),
        "--key".as_ref(),
        "a.bin".as_ref(),
        "--body".as_ref(),
        file.as_os_str(),
    ]);
    let put: serde_json::Value = serde_json::from_str(&put).unwrap();
    let etag = put["ETag"].as_str().unwrap_or_default();
    assert!(
        etag.starts_with('"'),
        "put-object shows a quoted ETag: {put}"
    );
    let out = aws.ok([
        "s3api",
        "get-object-attributes",
        "--bucket",
        "attr-bucket",
        "--key",
        "a.bin",
        "--object-attributes",
        "ETag",
        "ObjectSize",
        "StorageClass",
    ]);
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["ETag"].as_str(), Some(etag.trim_matches('"')), "{out}");
    assert_eq!(out["ObjectSize"].as_u64(), Some(70_000), "{out}");
    assert_eq!(out["StorageClass"].as_str(), Some("STANDARD"), "{out}");
    assert!(out["LastModified"].is_string(), "{out}");
    assert!(
        out.get("Checksum").is_none() && out.get("ObjectParts").is_none(),
        "{out}"
    );
}

fn awscli_v2_get_object_attributes(metadata: Metadata) {
    object_attributes(metadata, AwsCliVersion::V2);
}

fn awscli_v1_get_object_attributes(metadata: Metadata) {
    object_attributes(metadata, AwsCliVersion::V1);
}
