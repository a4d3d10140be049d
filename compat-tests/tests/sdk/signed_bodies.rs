//! Bodies that fail their signature or checksum create no object: requests signed by hand
//! (SigV4, as the AWS documents describe it) over a raw connection, so that the test controls
//! exactly which byte is wrong. Each negative case has a control that is identical but correct,
//! which proves the hand-made signing is right and that only the defect causes the refusal.
//!
//! Covered: a plain signed payload whose `x-amz-content-sha256` does not match the body;
//! `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (aws-chunked, signed chunks) with one bad chunk
//! signature; `STREAMING-UNSIGNED-PAYLOAD-TRAILER` with a wrong `x-amz-checksum-crc32` trailer.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::types::ChecksumMode;
use aws_smithy_types::date_time::Format;
use sdfbs_compat_tests::{
    http, on_each_backend, random_bytes, sha256_hex, Cluster, ClusterOptions, Metadata,
};
use sha2::{Digest, Sha256};

use crate::common::{assert_err, body_bytes, bucket, client, ok, Checksums};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(bodies_failing_signature_or_checksum_create_nothing);

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
    for i in 0..64 {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// A SigV4 signer for one request at one instant.
struct Signer {
    key: [u8; 32],
    access_key: String,
    amz_date: String,
    scope: String,
}

impl Signer {
    fn new(cluster: &Cluster) -> Signer {
        let now = aws_smithy_types::DateTime::from(SystemTime::now())
            .fmt(Format::DateTime)
            .unwrap();
        // 2024-01-02T03:04:05Z -> 20240102T030405Z
        let amz_date: String = now.chars().filter(|c| *c != '-' && *c != ':').collect();
        let amz_date = match amz_date.find('.') {
            Some(dot) => format!("{}Z", &amz_date[..dot]),
            None => amz_date,
        };
        let day = amz_date[..8].to_string();
        let k = hmac(
            format!("AWS4{}", cluster.secret_key).as_bytes(),
            day.as_bytes(),
        );
        let k = hmac(&k, cluster.region.as_bytes());
        let k = hmac(&k, b"s3");
        let key = hmac(&k, b"aws4_request");
        Signer {
            key,
            access_key: cluster.access_key.clone(),
            scope: format!("{day}/{}/s3/aws4_request", cluster.region),
            amz_date,
        }
    }

    /// Signs `PUT path` with `headers` (lower-case names, `host` included); returns the
    /// Authorization header value and the signature.
    fn sign_put(
        &self,
        path: &str,
        headers: &[(&str, String)],
        payload_hash: &str,
    ) -> (String, String) {
        let mut hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.trim())).collect();
        hs.sort();
        let canonical_headers: String = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let signed: Vec<&str> = hs.iter().map(|(k, _)| *k).collect();
        let signed = signed.join(";");
        let creq = format!("PUT\n{path}\n\n{canonical_headers}\n{signed}\n{payload_hash}");
        let sts = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(creq.as_bytes())
        );
        let sig = hex::encode(hmac(&self.key, sts.as_bytes()));
        (
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={signed}, Signature={sig}",
                self.access_key, self.scope
            ),
            sig,
        )
    }

    fn chunk_signature(&self, prev: &str, chunk: &[u8]) -> String {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{prev}\n{}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(b""),
            sha256_hex(chunk)
        );
        hex::encode(hmac(&self.key, sts.as_bytes()))
    }
}

/// aws-chunked body with signed chunks of `chunk` bytes; chunk `bad` (if any) gets a wrong
/// signature.
fn signed_chunked_body(
    signer: &Signer,
    seed: &str,
    data: &[u8],
    chunk: usize,
    bad: Option<usize>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = seed.to_string();
    let mut pieces: Vec<&[u8]> = data.chunks(chunk).collect();
    pieces.push(b"");
    for (i, piece) in pieces.iter().enumerate() {
        let mut sig = signer.chunk_signature(&prev, piece);
        prev = sig.clone();
        if bad == Some(i) {
            sig = "0".repeat(64);
        }
        out.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn streaming_signed_put(
    cluster: &Cluster,
    path: &str,
    data: &[u8],
    bad_chunk: Option<usize>,
) -> (u16, String) {
    let signer = Signer::new(cluster);
    let chunk = 64 * 1024;
    let hash = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
    let n_chunks = data.len().div_ceil(chunk) + 1;
    // The encoded length must be known before signing the headers: build once with a dummy
    // seed to measure it (every signature has the same length).
    let encoded_len = signed_chunked_body(&signer, "x", data, chunk, None).len();
    assert!(n_chunks > 2);
    let mut headers = vec![
        ("content-encoding", "aws-chunked".to_string()),
        ("x-amz-decoded-content-length", data.len().to_string()),
        ("content-length", encoded_len.to_string()),
    ];
    let authority = cluster.s3_url.trim_start_matches("http://").to_string();
    let mut for_sig = headers.clone();
    for_sig.push(("host", authority));
    for_sig.push(("x-amz-date", signer.amz_date.clone()));
    for_sig.push(("x-amz-content-sha256", hash.to_string()));
    let (_, seed) = signer.sign_put(path, &for_sig, hash);
    let body = signed_chunked_body(&signer, &seed, data, chunk, bad_chunk);
    assert_eq!(body.len(), encoded_len);
    // `http::request` sends Content-Length itself: drop ours from the sent headers (it was
    // signed with the same value).
    headers.retain(|(k, _)| *k != "content-length");
    let mut signed_headers = headers.clone();
    signed_headers.push(("content-length", encoded_len.to_string()));
    send_signed_with(cluster, path, signed_headers, hash, &body, &signer)
}

/// Sends a hand-signed PUT; returns (status, body). `headers` (lower-case names) may include
/// `content-length`: it is signed, and sent once, by `http::request`.
fn send_signed_with(
    cluster: &Cluster,
    path: &str,
    mut headers: Vec<(&'static str, String)>,
    payload_hash: &str,
    body: &[u8],
    signer: &Signer,
) -> (u16, String) {
    let authority = cluster.s3_url.trim_start_matches("http://").to_string();
    headers.push(("host", authority));
    headers.push(("x-amz-date", signer.amz_date.clone()));
    headers.push(("x-amz-content-sha256", payload_hash.to_string()));
    let (auth, _) = signer.sign_put(path, &headers, payload_hash);
    let mut sent: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| *k != "host" && *k != "content-length")
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    sent.push(("authorization", &auth));
    let resp = http::request(
        "PUT",
        &format!("{}{path}", cluster.s3_url),
        &sent,
        body,
        Duration::from_secs(30),
    )
    .unwrap();
    (
        resp.status,
        String::from_utf8_lossy(&resp.body).into_owned(),
    )
}

fn unsigned_trailer_put(
    cluster: &Cluster,
    path: &str,
    data: &[u8],
    crc32_b64: &str,
) -> (u16, String) {
    let signer = Signer::new(cluster);
    let mut body = Vec::new();
    for piece in data.chunks(100_000) {
        body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{crc32_b64}\r\n\r\n").as_bytes());
    let headers = vec![
        ("content-encoding", "aws-chunked".to_string()),
        ("x-amz-decoded-content-length", data.len().to_string()),
        ("x-amz-trailer", "x-amz-checksum-crc32".to_string()),
        ("content-length", body.len().to_string()),
    ];
    send_signed_with(
        cluster,
        path,
        headers,
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        &body,
        &signer,
    )
}

fn crc32_b64(data: &[u8]) -> String {
    let mut c = "crc32"
        .parse::<aws_smithy_checksums::ChecksumAlgorithm>()
        .unwrap()
        .into_impl();
    c.update(data);
    c.header_value().to_str().unwrap().to_string()
}

async fn bodies_failing_signature_or_checksum_create_nothing(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::WhenRequired);
    let b = bucket("signed");
    ok(s3.create_bucket().bucket(&b).send().await);
    let data = random_bytes(300_000, 11);
    let other = random_bytes(300_000, 12);
    let c = &cluster;

    // Plain signed payload: the hash of the body is in x-amz-content-sha256.
    let signer = Signer::new(c);
    let (status, body) = send_signed_with(
        c,
        &format!("/{b}/plain-ok"),
        vec![],
        &sha256_hex(&data),
        &data,
        &signer,
    );
    assert_eq!(status, 200, "control: {body}");
    let (status, body) = send_signed_with(
        c,
        &format!("/{b}/plain-bad"),
        vec![],
        &sha256_hex(&other),
        &data,
        &signer,
    );
    assert_eq!(status, 400, "payload hash mismatch: {body}");
    assert!(
        body.contains("XAmzContentSHA256Mismatch") || body.contains("BadDigest"),
        "{body}"
    );

    // Signed aws-chunked.
    let (status, body) = tokio::task::block_in_place(|| {
        streaming_signed_put(c, &format!("/{b}/chunked-ok"), &data, None)
    });
    assert_eq!(status, 200, "control: {body}");
    let (status, body) = tokio::task::block_in_place(|| {
        streaming_signed_put(c, &format!("/{b}/chunked-bad"), &data, Some(2))
    });
    assert_eq!(status, 403, "bad chunk signature: {body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");

    // Unsigned aws-chunked with a CRC32 trailer.
    let (status, body) =
        unsigned_trailer_put(c, &format!("/{b}/trailer-ok"), &data, &crc32_b64(&data));
    assert_eq!(status, 200, "control: {body}");
    let (status, body) =
        unsigned_trailer_put(c, &format!("/{b}/trailer-bad"), &data, &crc32_b64(&other));
    assert_eq!(status, 400, "bad trailer checksum: {body}");
    assert!(body.contains("BadDigest"), "{body}");

    for key in ["plain-ok", "chunked-ok", "trailer-ok"] {
        let got = ok(s3.get_object().bucket(&b).key(key).send().await);
        assert_eq!(
            sha256_hex(&body_bytes(got).await),
            sha256_hex(&data),
            "{key}"
        );
    }
    let head = ok(s3
        .head_object()
        .bucket(&b)
        .key("trailer-ok")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await);
    assert_eq!(head.checksum_crc32(), Some(crc32_b64(&data).as_str()));
    for key in ["plain-bad", "chunked-bad", "trailer-bad"] {
        assert_err(s3.head_object().bucket(&b).key(key).send().await, 404, "");
    }
}
