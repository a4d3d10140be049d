//! A deliberately raw S3 client for the edge-case tests: it signs requests with AWS SigV4
//! itself and speaks HTTP/1.1 over a plain TCP socket, so a test can send exactly the bytes it
//! wants (hostile keys, malformed XML, a body that stops early, oversized headers) and see
//! exactly what the gateway answers.

use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const REGION: &str = "us-east-1";
const UNRESERVED: &[u8] = b"-_.~";

/// A response as the client saw it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `<Code>` of an S3 error body.
    pub fn code(&self) -> String {
        xml_value(&self.text(), "Code").unwrap_or_default()
    }
}

/// The text of the first `<tag>` element of an XML document.
pub fn xml_value(xml: &str, tag: &str) -> Option<String> {
    xml_values(xml, tag).into_iter().next()
}

/// The texts of every `<tag>` element, in order.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    out
}

/// Percent-encodes as SigV4 wants: everything but unreserved characters (and `/` if `path`).
pub fn uri_encode(s: &str, path: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || UNRESERVED.contains(&b) || (path && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.iter().map(|b| b ^ 0x36).collect::<Vec<_>>());
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(k.iter().map(|b| b ^ 0x5c).collect::<Vec<_>>());
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

/// Credentials of a client; `None` sends unsigned requests.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub creds: Option<(String, String)>,
}

/// One request to send.
pub struct Request<'a> {
    pub method: &'a str,
    /// Decoded path, e.g. `/bucket/some key`.
    pub path: &'a str,
    /// Decoded query pairs.
    pub query: Vec<(&'a str, &'a str)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send only this many bytes of the body (then close), while declaring the full length.
    pub truncate_body_at: Option<usize>,
    /// The `x-amz-content-sha256` to sign instead of the body's SHA-256 (for example
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`).
    pub payload_hash: Option<String>,
}

impl<'a> Request<'a> {
    pub fn new(method: &'a str, path: &'a str) -> Request<'a> {
        Request {
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            truncate_body_at: None,
            payload_hash: None,
        }
    }

    pub fn query(mut self, k: &'a str, v: &'a str) -> Self {
        self.query.push((k, v));
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_ascii_lowercase(), v.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

fn amz_date() -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let date = format!(
        "{:04}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let full = format!(
        "{date}T{:02}{:02}{:02}Z",
        now.hour(),
        now.minute(),
        now.second()
    );
    (date, full)
}

impl Client {
    pub fn with_key(&self, access: &str, secret: &str) -> Client {
        Client {
            addr: self.addr,
            creds: Some((access.to_string(), secret.to_string())),
        }
    }

    pub fn anonymous(&self) -> Client {
        Client {
            addr: self.addr,
            creds: None,
        }
    }

    /// Builds the raw bytes of a signed request.
    pub fn encode(&self, req: &Request<'_>) -> Vec<u8> {
        let host = self.addr.to_string();
        let path = uri_encode(req.path, true);
        let mut query: Vec<(String, String)> = req
            .query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        query.sort();
        let query_string = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let payload_hash = req
            .payload_hash
            .clone()
            .unwrap_or_else(|| hex::encode(Sha256::digest(&req.body)));
        let (date, stamp) = amz_date();
        let mut headers: Vec<(String, String)> = req.headers.clone();
        headers.push(("host".into(), host.clone()));
        if self.creds.is_some() {
            headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
            headers.push(("x-amz-date".into(), stamp.clone()));
        }
        headers.sort();
        if let Some((access, secret)) = &self.creds {
            let canonical_headers: String = headers
                .iter()
                .map(|(k, v)| format!("{k}:{}\n", v.trim()))
                .collect();
            let signed: String = headers
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(";");
            let canonical = format!(
                "{}\n{}\n{}\n{}\n{}\n{}",
                req.method, path, query_string, canonical_headers, signed, payload_hash
            );
            let scope = format!("{date}/{REGION}/s3/aws4_request");
            let to_sign = format!(
                "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
                hex::encode(Sha256::digest(canonical.as_bytes()))
            );
            let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
            for part in [REGION, "s3", "aws4_request"] {
                key = hmac(&key, part.as_bytes());
            }
            let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
            headers.push((
                "authorization".into(),
                format!("AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, Signature={signature}"),
            ));
        }
        let target = if query_string.is_empty() {
            path
        } else {
            format!("{path}?{query_string}")
        };
        let mut out = format!("{} {} HTTP/1.1\r\n", req.method, target);
        for (k, v) in &headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            req.body.len()
        ));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&req.body);
        bytes
    }

    /// Sends a request on a fresh connection and reads the whole answer.
    pub async fn send(&self, req: Request<'_>) -> Response {
        let raw = self.encode(&req);
        let head_len = raw.len() - req.body.len();
        let send_len = match req.truncate_body_at {
            Some(n) => head_len + n.min(req.body.len()),
            None => raw.len(),
        };
        let mut stream = TcpStream::connect(self.addr)
            .await
            .expect("connect to the gateway");
        stream.set_nodelay(true).ok();
        stream
            .write_all(&raw[..send_len])
            .await
            .expect("send request");
        if req.truncate_body_at.is_some() {
            // The client goes away mid-body.
            stream.shutdown().await.ok();
        }
        let mut buf = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut buf)).await;
        match read {
            Ok(Ok(_)) => {}
            // A reset after a truncated body is an acceptable way for the server to end it.
            Ok(Err(_)) if req.truncate_body_at.is_some() => {}
            Ok(Err(e)) => panic!("reading the response failed: {e}"),
            Err(_) => panic!("no response within 60 s"),
        }
        parse(&buf)
    }
}

fn parse(buf: &[u8]) -> Response {
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Response {
            status: 0,
            headers: Vec::new(),
            body: buf.to_vec(),
        };
    };
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let raw_body = &buf[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&raw[..eol]).into_owned();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
    out
}
