//! Multipart uploads and checksums: malformed XML, part-list errors, UploadPartCopy, aws-chunked
//! trailers, FULL_OBJECT CRCs.

use crate::client::{xml_value, Request};
use crate::cluster::*;

/// An aws-chunked body with unsigned chunks and a trailer, as current SDKs send by default.
fn aws_chunked_with_trailer(data: &[u8], trailer: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("0\r\n{trailer}\r\n\r\n").as_bytes());
    out
}

fn trailer_put<'a>(path: &'a str, data: &[u8], crc: &str) -> Request<'a> {
    let mut req = Request::new("PUT", path)
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", &data.len().to_string())
        .header("x-amz-trailer", "x-amz-checksum-crc32")
        .header("x-amz-sdk-checksum-algorithm", "CRC32")
        .body(aws_chunked_with_trailer(
            data,
            &format!("x-amz-checksum-crc32:{crc}"),
        ));
    req.payload_hash = Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER".into());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_xml_and_multipart_errors() {
    let c = Cluster::start().await;
    c.create_bucket("mpu").await;
    let r = c
        .client
        .send(
            Request::new("POST", "/mpu")
                .query("delete", "")
                .body("<Delete><Object><Key>a</Key>"),
        )
        .await;
    expect_error(&r, 400, "MalformedXML");

    let r = c
        .client
        .send(Request::new("POST", "/mpu/big").query("uploads", ""))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let upload = xml_value(&r.text(), "UploadId").expect("upload id");
    let part1: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let part2 = b"tail".to_vec();
    let mut etags = Vec::new();
    for (n, data) in [("1", &part1), ("2", &part2)] {
        let r = c
            .client
            .send(
                Request::new("PUT", "/mpu/big")
                    .query("partNumber", n)
                    .query("uploadId", &upload)
                    .body(data.clone()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        etags.push(r.header("etag").expect("etag").to_string());
    }
    let complete = |parts: &[(u32, &str)]| {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, e) in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        xml
    };
    let send_complete = |xml: String| {
        let client = c.client.clone();
        let upload = upload.clone();
        async move {
            client
                .send(
                    Request::new("POST", "/mpu/big")
                        .query("uploadId", &upload)
                        .body(xml),
                )
                .await
        }
    };
    expect_error(
        &send_complete("<CompleteMultipartUpload><Part>".into()).await,
        400,
        "MalformedXML",
    );
    expect_error(
        &send_complete(complete(&[(2, &etags[1]), (1, &etags[0])])).await,
        400,
        "InvalidPartOrder",
    );
    expect_error(
        &send_complete(complete(&[(1, &etags[0]), (3, "\"abc\"")])).await,
        400,
        "InvalidPart",
    );
    expect_error(
        &send_complete(complete(&[(1, "\"00000000000000000000000000000000\"")])).await,
        400,
        "InvalidPart",
    );
    // A 4-byte part that is not the last one is too small.
    let r = c
        .client
        .send(
            Request::new("PUT", "/mpu/big")
                .query("partNumber", "3")
                .query("uploadId", &upload)
                .body(part2.clone()),
        )
        .await;
    let etag3 = r.header("etag").expect("etag").to_string();
    expect_error(
        &send_complete(complete(&[(1, &etags[0]), (2, &etags[1]), (3, &etag3)])).await,
        400,
        "EntityTooSmall",
    );
    let r = send_complete(complete(&[(1, &etags[0]), (2, &etags[1])])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let etag = xml_value(&r.text(), "ETag").expect("etag");
    assert!(
        etag.ends_with("-2\"") || etag.ends_with("-2&quot;"),
        "{etag}"
    );
    let whole = c.get("mpu", "big").await;
    assert_eq!(whole.body, [part1.clone(), part2.clone()].concat());
    let r = c
        .client
        .send(Request::new("GET", "/mpu/big").query("partNumber", "2"))
        .await;
    assert_eq!((r.status, r.body.as_slice()), (206, part2.as_slice()));
    assert_eq!(r.header("x-amz-mp-parts-count"), Some("2"));
    // A retry of the same completion (its answer was lost) gets the same answer; any other
    // part list finds the upload gone.
    let r = send_complete(complete(&[(1, &etags[0]), (2, &etags[1])])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(xml_value(&r.text(), "ETag"), Some(etag.clone()));
    expect_error(
        &send_complete(complete(&[(1, &etags[0])])).await,
        404,
        "NoSuchUpload",
    );
    let r = c
        .client
        .send(Request::new("DELETE", "/mpu/big").query("uploadId", "no-such-upload"))
        .await;
    expect_error(&r, 404, "NoSuchUpload");

    // UploadPartCopy with a range, into a new upload.
    let r = c
        .client
        .send(Request::new("POST", "/mpu/copy").query("uploads", ""))
        .await;
    let upload2 = xml_value(&r.text(), "UploadId").expect("upload id");
    let r = c
        .client
        .send(
            Request::new("PUT", "/mpu/copy")
                .query("partNumber", "1")
                .query("uploadId", &upload2)
                .header("x-amz-copy-source", "/mpu/big")
                .header("x-amz-copy-source-range", "bytes=1048570-1048590"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let copy_etag = xml_value(&r.text(), "ETag")
        .expect("etag")
        .replace("&quot;", "\"");
    let r = c
        .client
        .send(
            Request::new("POST", "/mpu/copy")
                .query("uploadId", &upload2)
                .body(complete(&[(1, &copy_etag)])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.get("mpu", "copy").await.body, part1[1048570..=1048590]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailer_checksums_and_full_object_multipart_checksums() {
    let c = Cluster::start().await;
    c.create_bucket("sums").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let good = b64(&crc32(&data).to_be_bytes());

    // A trailer that does not match the body: BadDigest, and nothing is created.
    let r = c
        .client
        .send(trailer_put("/sums/t", &data, "AAAAAA=="))
        .await;
    expect_error(&r, 400, "BadDigest");
    assert!(!c.exists("sums", "t").await);
    // The right trailer: stored, and returned with checksum mode.
    let r = c.client.send(trailer_put("/sums/t", &data, &good)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .client
        .send(Request::new("GET", "/sums/t").header("x-amz-checksum-mode", "ENABLED"))
        .await;
    assert_eq!(r.body, data);
    assert_eq!(r.header("x-amz-checksum-crc32"), Some(good.as_str()));

    // A FULL_OBJECT CRC32 multipart upload: the object's CRC32 is the CRC32 of all its bytes,
    // combined from the parts without reading them again.
    let r = c
        .client
        .send(
            Request::new("POST", "/sums/mp")
                .query("uploads", "")
                .header("x-amz-checksum-algorithm", "CRC32")
                .header("x-amz-checksum-type", "FULL_OBJECT"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let upload = xml_value(&r.text(), "UploadId").expect("upload id");
    let part1: Vec<u8> = (0..5 * 1024 * 1024 + 3).map(|i| (i % 239) as u8).collect();
    let part2 = data.clone();
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (n, part) in [("1", &part1), ("2", &part2)] {
        let crc = b64(&crc32(part).to_be_bytes());
        let r = c
            .client
            .send(
                Request::new("PUT", "/sums/mp")
                    .query("partNumber", n)
                    .query("uploadId", &upload)
                    .header("x-amz-checksum-crc32", &crc)
                    .body(part.clone()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-amz-checksum-crc32"), Some(crc.as_str()));
        let etag = r.header("etag").expect("etag");
        xml.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag><ChecksumCRC32>{crc}</ChecksumCRC32></Part>"
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let whole = [part1, part2].concat();
    let expected = b64(&crc32(&whole).to_be_bytes());
    let r = c
        .client
        .send(
            Request::new("POST", "/sums/mp")
                .query("uploadId", &upload)
                .body(xml),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        xml_value(&r.text(), "ChecksumCRC32").as_deref(),
        Some(expected.as_str())
    );
    let r = c
        .client
        .send(Request::new("HEAD", "/sums/mp").header("x-amz-checksum-mode", "ENABLED"))
        .await;
    assert_eq!(r.header("x-amz-checksum-crc32"), Some(expected.as_str()));
    assert_eq!(r.header("x-amz-checksum-type"), Some("FULL_OBJECT"));
    assert_eq!(c.get("sums", "mp").await.body, whole);
    c.stop().await;
}
