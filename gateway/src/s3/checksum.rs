//! Integrity of object bodies: the MD5 behind every ETag, Content-MD5, and the
//! `x-amz-checksum-*` algorithms (CRC32, CRC32C, CRC64NVME, SHA1, SHA256).
//!
//! [`BodyDigests`] is the pipeline's `BodyHasher`: it computes the MD5 and every requested
//! checksum in one pass while the pipeline cuts the body into chunks. After the body is written
//! and before anything is committed, the handler compares what the client announced (in a
//! header or in an aws-chunked trailer) with what the body really was ([`verify`]); a mismatch
//! is `BadDigest` and no object is created.
//!
//! Multipart objects get a checksum of one of two types (as AWS defines them):
//! * COMPOSITE: the checksum of the concatenated binary part checksums, plus `-N`;
//! * FULL_OBJECT: the CRC of the whole object, obtained by combining the part CRCs with their
//!   lengths (CRC32, CRC32C and CRC64NVME only) without reading any data again.

use crate::pipeline::BodyHasher;
use base64::Engine as _;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
use s3s::{S3Error, S3ErrorCode};
use std::collections::BTreeMap;

/// One of the S3 checksum algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

pub const ALL: [Algorithm; 5] = [
    Algorithm::Crc32,
    Algorithm::Crc32c,
    Algorithm::Crc64Nvme,
    Algorithm::Sha1,
    Algorithm::Sha256,
];

pub const COMPOSITE: &str = "COMPOSITE";
pub const FULL_OBJECT: &str = "FULL_OBJECT";

impl Algorithm {
    /// The name S3 uses (`x-amz-checksum-algorithm`, stored records).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    /// The header (or trailer) that carries a value of this algorithm.
    pub fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    pub fn from_name(name: &str) -> Option<Algorithm> {
        ALL.into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    pub fn from_header(name: &str) -> Option<Algorithm> {
        ALL.into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(name.trim()))
    }

    /// Parses an algorithm named by a client, or fails with `InvalidRequest`.
    pub fn parse(name: &str) -> Result<Algorithm, S3Error> {
        Algorithm::from_name(name).ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                format!("unsupported checksum algorithm `{name}`"),
            )
        })
    }

    fn is_crc(self) -> bool {
        matches!(
            self,
            Algorithm::Crc32 | Algorithm::Crc32c | Algorithm::Crc64Nvme
        )
    }

    /// Whether a multipart upload may use this algorithm with this checksum type.
    pub fn supports_type(self, checksum_type: &str) -> bool {
        match checksum_type {
            FULL_OBJECT => self.is_crc(),
            COMPOSITE => self != Algorithm::Crc64Nvme,
            _ => false,
        }
    }

    /// The type a multipart upload gets when the client names only the algorithm.
    pub fn default_type(self) -> &'static str {
        if self == Algorithm::Crc64Nvme {
            FULL_OBJECT
        } else {
            COMPOSITE
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Crc32 => Crc32::checksum(data).to_vec(),
            Algorithm::Crc32c => Crc32c::checksum(data).to_vec(),
            Algorithm::Crc64Nvme => Crc64Nvme::checksum(data).to_vec(),
            Algorithm::Sha1 => Sha1::checksum(data).to_vec(),
            Algorithm::Sha256 => Sha256::checksum(data).to_vec(),
        }
    }

    fn crc_algorithm(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Algorithm::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Algorithm::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Algorithm::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
    }
}

enum State {
    Crc32(Crc32),
    Crc32c(Crc32c),
    Crc64Nvme(Crc64Nvme),
    Sha1(Sha1),
    Sha256(Box<Sha256>),
}

impl State {
    fn new(algorithm: Algorithm) -> State {
        match algorithm {
            Algorithm::Crc32 => State::Crc32(Crc32::new()),
            Algorithm::Crc32c => State::Crc32c(Crc32c::new()),
            Algorithm::Crc64Nvme => State::Crc64Nvme(Crc64Nvme::new()),
            Algorithm::Sha1 => State::Sha1(Sha1::new()),
            Algorithm::Sha256 => State::Sha256(Box::new(Sha256::new())),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            State::Crc32(h) => h.update(data),
            State::Crc32c(h) => h.update(data),
            State::Crc64Nvme(h) => h.update(data),
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
        }
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            State::Crc32(h) => h.finalize().to_vec(),
            State::Crc32c(h) => h.finalize().to_vec(),
            State::Crc64Nvme(h) => h.finalize().to_vec(),
            State::Sha1(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// The digests of one body, computed in one pass: MD5 always, plus the requested checksums.
pub struct BodyDigests {
    md5: Md5,
    checksums: Vec<(Algorithm, State)>,
}

impl BodyDigests {
    pub fn new(algorithms: impl IntoIterator<Item = Algorithm>) -> BodyDigests {
        let mut list: Vec<Algorithm> = algorithms.into_iter().collect();
        list.sort();
        list.dedup();
        BodyDigests {
            md5: Md5::new(),
            checksums: list.into_iter().map(|a| (a, State::new(a))).collect(),
        }
    }

    pub fn finish(self) -> Finished {
        let checksums = self
            .checksums
            .into_iter()
            .map(|(a, s)| (a, b64(&s.finalize())))
            .collect();
        Finished {
            md5: self.md5.finalize(),
            checksums,
        }
    }
}

impl BodyHasher for BodyDigests {
    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        for (_, state) in &mut self.checksums {
            state.update(data);
        }
    }
}

/// One checksum of a whole object, computed over its bytes in order: what a CopyObject that asks
/// for an algorithm its source lacks computes while it reads the source.
pub struct ObjectChecksum(State);

impl ObjectChecksum {
    pub fn new(algorithm: Algorithm) -> ObjectChecksum {
        ObjectChecksum(State::new(algorithm))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The base64 value, as S3 carries it.
    pub fn finish(self) -> String {
        b64(&self.0.finalize())
    }
}

/// The final digests of a body.
pub struct Finished {
    pub md5: [u8; 16],
    /// Base64 values, as S3 carries them.
    pub checksums: BTreeMap<Algorithm, String>,
}

impl Finished {
    /// The ETag of a single-part object or of a part: the hex MD5.
    pub fn etag(&self) -> String {
        hex::encode(self.md5)
    }

    /// The checksums as an `ObjectRecord` / `PartRecord` stores them.
    pub fn stored(&self) -> BTreeMap<String, String> {
        self.checksums
            .iter()
            .map(|(a, v)| (a.name().to_string(), v.clone()))
            .collect()
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn b64_decode(value: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
}

/// Checks a body's digests against what the client announced: `content_md5` (base64, the
/// Content-MD5 header) and `expected` checksums (from headers or trailers).
pub fn verify(
    got: &Finished,
    content_md5: Option<&str>,
    expected: &BTreeMap<Algorithm, String>,
) -> Result<(), S3Error> {
    if let Some(md5) = content_md5 {
        match b64_decode(md5) {
            Some(bytes) if bytes.len() == 16 => {
                if bytes != got.md5 {
                    return Err(crate::s3::error::bad_digest("Content-MD5"));
                }
            }
            _ => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidDigest,
                    "the Content-MD5 you specified is not a valid base64 MD5",
                ))
            }
        }
    }
    for (algorithm, value) in expected {
        let Some(computed) = got.checksums.get(algorithm) else {
            // The handler computes every algorithm it will verify; a missing one is a bug.
            return Err(S3Error::with_message(
                S3ErrorCode::InternalError,
                format!("checksum {} was not computed", algorithm.name()),
            ));
        };
        if computed != value.trim() {
            return Err(crate::s3::error::bad_digest(&format!(
                "x-amz-checksum-{}",
                algorithm.name().to_ascii_lowercase()
            )));
        }
    }
    Ok(())
}

/// The checksum of a multipart object of type COMPOSITE: the algorithm applied to the
/// concatenated binary checksums of the parts, then `-N`. `None` if a part value is not valid
/// base64.
pub fn composite(algorithm: Algorithm, part_values: &[&str]) -> Option<String> {
    let mut concatenated = Vec::with_capacity(part_values.len() * 32);
    for value in part_values {
        concatenated.extend_from_slice(&b64_decode(value)?);
    }
    Some(format!(
        "{}-{}",
        b64(&algorithm.digest(&concatenated)),
        part_values.len()
    ))
}

/// The checksum of a multipart object of type FULL_OBJECT: the CRC of the whole object, from
/// the part CRCs (base64) and the part lengths. `None` for a non-CRC algorithm or a bad value.
pub fn full_object(algorithm: Algorithm, parts: &[(&str, u64)]) -> Option<String> {
    let crc = algorithm.crc_algorithm()?;
    let width = if algorithm == Algorithm::Crc64Nvme {
        8
    } else {
        4
    };
    let mut acc: Option<u64> = None;
    for (value, len) in parts {
        let bytes = b64_decode(value)?;
        if bytes.len() != width {
            return None;
        }
        let part = bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
        acc = Some(match acc {
            None => part,
            Some(a) => crc_fast::checksum_combine(crc, a, part, *len),
        });
    }
    // The CRC of no data at all (no parts cannot happen: CompleteMultipartUpload needs one).
    let value = acc.unwrap_or(0);
    let be = value.to_be_bytes();
    Some(b64(&be[8 - width..]))
}

/// ETag of a multipart object: MD5 of the concatenated binary MD5s of the parts, then `-N`.
/// `None` if a part ETag is not a hex MD5.
pub fn multipart_etag(part_etags: &[&str]) -> Option<String> {
    let mut concatenated = Vec::with_capacity(part_etags.len() * 16);
    for etag in part_etags {
        let bytes = hex::decode(etag.trim_matches('"')).ok()?;
        if bytes.len() != 16 {
            return None;
        }
        concatenated.extend_from_slice(&bytes);
    }
    Some(format!(
        "{}-{}",
        hex::encode(Md5::checksum(&concatenated)),
        part_etags.len()
    ))
}

/// No `x-amz-checksum-*` value at all (a copied part).
pub fn no_values<'a>() -> [(Algorithm, Option<&'a String>); 5] {
    ALL.map(|a| (a, None))
}

/// What a write asks for: the algorithms to compute over the body, the values announced in
/// headers, and the algorithms whose values arrive in the aws-chunked trailer.
#[derive(Debug, Default)]
pub struct Requested {
    pub compute: Vec<Algorithm>,
    pub in_headers: BTreeMap<Algorithm, String>,
    pub in_trailer: Vec<Algorithm>,
}

impl Requested {
    /// From a write's `x-amz-sdk-checksum-algorithm` / `x-amz-checksum-algorithm`
    /// (`algorithm`), its `x-amz-checksum-*` values (`values`), the `x-amz-trailer` header
    /// and the algorithm a multipart upload declared (`upload`).
    pub fn new(
        algorithm: Option<&str>,
        values: [(Algorithm, Option<&String>); 5],
        trailer_header: Option<&str>,
        upload: Option<Algorithm>,
    ) -> Result<Requested, S3Error> {
        let mut r = Requested::default();
        for (a, v) in values {
            if let Some(v) = v {
                r.in_headers.insert(a, v.trim().to_string());
            }
        }
        if r.in_headers.len() > 1 {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            ));
        }
        if let Some(names) = trailer_header {
            for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if let Some(a) = Algorithm::from_header(name) {
                    r.in_trailer.push(a);
                }
            }
        }
        r.compute.extend(r.in_headers.keys().copied());
        r.compute.extend(r.in_trailer.iter().copied());
        if let Some(name) = algorithm {
            r.compute.push(Algorithm::parse(name)?);
        }
        r.compute.extend(upload);
        r.compute.sort();
        r.compute.dedup();
        Ok(r)
    }

    /// Every value to verify: the header values plus those read from the trailer (which is
    /// only complete once the body has been read to its end).
    pub fn expected(
        &self,
        trailers: Option<&s3s::TrailingHeaders>,
    ) -> Result<BTreeMap<Algorithm, String>, S3Error> {
        let mut expected = self.in_headers.clone();
        for a in &self.in_trailer {
            let value = trailers.and_then(|t| {
                t.read(|h| {
                    h.get(a.header())
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim().to_string())
                })
                .flatten()
            });
            match value {
                Some(v) => {
                    expected.insert(*a, v);
                }
                None => {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidRequest,
                        format!(
                            "the trailer {} was announced in x-amz-trailer but not sent",
                            a.header()
                        ),
                    ))
                }
            }
        }
        Ok(expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(algorithms: &[Algorithm], pieces: &[&[u8]]) -> Finished {
        let mut d = BodyDigests::new(algorithms.iter().copied());
        for p in pieces {
            d.update(p);
        }
        d.finish()
    }

    #[test]
    fn known_values() {
        let f = digest_of(&ALL, &[b"1234", b"56789"]);
        assert_eq!(f.etag(), "25f9e794323b453885f5181f1b624d0b");
        // CRC-32 of "123456789" is 0xcbf43926, CRC-32C 0xe3069283.
        assert_eq!(
            f.checksums[&Algorithm::Crc32],
            b64(&0xcbf4_3926u32.to_be_bytes())
        );
        assert_eq!(
            f.checksums[&Algorithm::Crc32c],
            b64(&0xe306_9283u32.to_be_bytes())
        );
        assert_eq!(
            f.checksums[&Algorithm::Sha256],
            "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU="
        );
    }

    #[test]
    fn an_object_checksum_equals_the_body_checksum() {
        let whole = digest_of(&ALL, &[b"123456789"]);
        for a in ALL {
            let mut c = ObjectChecksum::new(a);
            c.update(b"1234");
            c.update(b"");
            c.update(b"56789");
            assert_eq!(c.finish(), whole.checksums[&a], "{a:?}");
        }
    }

    #[test]
    fn verify_detects_mismatches() {
        let f = digest_of(&[Algorithm::Crc32], &[b"hello"]);
        let good = f.checksums[&Algorithm::Crc32].clone();
        let md5 = b64(&f.md5);
        let mut expected = BTreeMap::new();
        expected.insert(Algorithm::Crc32, good);
        assert!(verify(&f, Some(&md5), &expected).is_ok());

        expected.insert(Algorithm::Crc32, b64(&[0, 0, 0, 0]));
        let e = verify(&f, None, &expected).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::BadDigest);

        let e = verify(&f, Some(&b64(&[0u8; 16])), &BTreeMap::new()).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::BadDigest);
        let e = verify(&f, Some("not base64!"), &BTreeMap::new()).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::InvalidDigest);
    }

    #[test]
    fn full_object_crc_combines_parts() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (a, rest) = data.split_at(1_234_567);
        let (b, c) = rest.split_at(1_000_000);
        for algorithm in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let whole = digest_of(&[algorithm], &[&data]).checksums[&algorithm].clone();
            let parts: Vec<(String, u64)> = [a, b, c]
                .iter()
                .map(|p| {
                    (
                        digest_of(&[algorithm], &[p]).checksums[&algorithm].clone(),
                        p.len() as u64,
                    )
                })
                .collect();
            let refs: Vec<(&str, u64)> = parts.iter().map(|(v, l)| (v.as_str(), *l)).collect();
            assert_eq!(full_object(algorithm, &refs), Some(whole), "{algorithm:?}");
        }
        assert_eq!(full_object(Algorithm::Sha256, &[("AAAA", 1)]), None);
    }

    #[test]
    fn composite_is_checksum_of_checksums() {
        let p1 =
            digest_of(&[Algorithm::Sha256], &[b"part one"]).checksums[&Algorithm::Sha256].clone();
        let p2 =
            digest_of(&[Algorithm::Sha256], &[b"part two"]).checksums[&Algorithm::Sha256].clone();
        let mut raw = b64_decode(&p1).unwrap();
        raw.extend(b64_decode(&p2).unwrap());
        let expected = format!("{}-2", b64(&Sha256::checksum(&raw)));
        assert_eq!(composite(Algorithm::Sha256, &[&p1, &p2]), Some(expected));
        assert_eq!(composite(Algorithm::Sha256, &["%%%"]), None);
    }

    #[test]
    fn multipart_etag_matches_aws() {
        // Two parts whose MD5s are md5("a") and md5("b").
        let a = hex::encode(Md5::checksum(b"a"));
        let b = hex::encode(Md5::checksum(b"b"));
        let mut raw = hex::decode(&a).unwrap();
        raw.extend(hex::decode(&b).unwrap());
        let expected = format!("{}-2", hex::encode(Md5::checksum(&raw)));
        assert_eq!(multipart_etag(&[&a, &format!("\"{b}\"")]), Some(expected));
        assert_eq!(multipart_etag(&["zz"]), None);
    }

    #[test]
    fn requested_checksums() {
        let v = "AAAAAA==".to_string();
        let r = Requested::new(
            Some("sha256"),
            [
                (Algorithm::Crc32, Some(&v)),
                (Algorithm::Crc32c, None),
                (Algorithm::Crc64Nvme, None),
                (Algorithm::Sha1, None),
                (Algorithm::Sha256, None),
            ],
            Some("x-amz-checksum-crc64nvme"),
            Some(Algorithm::Crc32c),
        )
        .unwrap();
        assert_eq!(
            r.compute,
            vec![
                Algorithm::Crc32,
                Algorithm::Crc32c,
                Algorithm::Crc64Nvme,
                Algorithm::Sha256
            ]
        );
        assert_eq!(r.in_trailer, vec![Algorithm::Crc64Nvme]);
        // The announced trailer never came.
        assert!(r.expected(None).is_err());
        let two = [
            (Algorithm::Crc32, Some(&v)),
            (Algorithm::Crc32c, Some(&v)),
            (Algorithm::Crc64Nvme, None),
            (Algorithm::Sha1, None),
            (Algorithm::Sha256, None),
        ];
        assert!(Requested::new(None, two, None, None).is_err());
        assert!(Requested::new(Some("md4"), no_values(), None, None).is_err());
    }

    #[test]
    fn types_and_algorithms() {
        assert!(!Algorithm::Sha1.supports_type(FULL_OBJECT));
        assert!(!Algorithm::Crc64Nvme.supports_type(COMPOSITE));
        assert!(Algorithm::Crc32.supports_type(FULL_OBJECT));
        assert_eq!(Algorithm::Crc64Nvme.default_type(), FULL_OBJECT);
        assert_eq!(Algorithm::from_name("crc32c"), Some(Algorithm::Crc32c));
        assert_eq!(
            Algorithm::from_header("X-Amz-Checksum-Sha256"),
            Some(Algorithm::Sha256)
        );
    }
}
