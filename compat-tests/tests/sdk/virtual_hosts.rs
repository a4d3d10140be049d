//! Virtual-hosted-style addressing (`sdfbs gateway --s3-domain s3.localhost`): the SDK with
//! `force_path_style(false)` sends `Host: BUCKET.s3.localhost:PORT` and a path of the key alone;
//! objects round-trip through that form, and path-style clients keep working on the same gateway.
//!
//! `BUCKET.s3.localhost` does not resolve through this machine's resolver, so an interceptor
//! connects the SDK to the gateway's loopback address after the request was built and signed,
//! keeping its `Host` header, as `curl --connect-to` does. What the gateway receives is exactly
//! what it would receive through DNS.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use sdfbs_compat_tests::{
    on_each_backend, random_bytes, sha256_hex, Cluster, ClusterOptions, Metadata,
};

use crate::common::{assert_err, body_bytes, client, ok, Checksums};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(virtual_hosted_style_addressing);

const DOMAIN: &str = "s3.localhost";

/// Sends every request to `addr` whatever its URL's host, with the URL's host as `Host` header;
/// records the `Host` of each request.
#[derive(Debug)]
struct ConnectTo {
    addr: String,
    hosts: Arc<Mutex<Vec<String>>>,
}

impl Intercept for ConnectTo {
    fn name(&self) -> &'static str {
        "ConnectTo"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let uri = request.uri().to_string();
        let rest = uri.strip_prefix("http://").ok_or("not an http:// URL")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = host.to_string();
        request.headers_mut().insert("host", host.clone());
        request.set_uri(format!("http://{}{}", self.addr, path))?;
        self.hosts.lock().map_err(|_| "poisoned")?.push(host);
        Ok(())
    }
}

/// A virtual-hosted-style client for `cluster` (started with `--s3-domain DOMAIN`), and the
/// `Host` headers it sent.
fn virtual_hosted_client(cluster: &Cluster) -> (Client, Arc<Mutex<Vec<String>>>) {
    let addr = cluster
        .s3_url
        .strip_prefix("http://")
        .expect("an http:// endpoint")
        .to_string();
    let port = addr.rsplit_once(':').map(|(_, p)| p).expect("a port");
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(cluster.region.clone()))
        .endpoint_url(format!("http://{DOMAIN}:{port}"))
        .force_path_style(false)
        .credentials_provider(Credentials::new(
            &cluster.access_key,
            &cluster.secret_key,
            None,
            None,
            "sdfbs-compat-tests",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .interceptor(ConnectTo {
            addr,
            hosts: hosts.clone(),
        })
        .build();
    (Client::from_conf(conf), hosts)
}

async fn virtual_hosted_style_addressing(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions {
        metadata,
        gateway_args: vec!["--s3-domain".into(), DOMAIN.into()],
        ..Default::default()
    });
    let (vh, hosts) = virtual_hosted_client(&cluster);
    let port = cluster.s3_url.rsplit_once(':').map(|(_, p)| p).unwrap();
    let b = "vhost-photos";
    let key = "2024/summer trip/ünï.raw";
    let data = random_bytes(2 * (1 << 20) + 17, 41);

    ok(vh.create_bucket().bucket(b).send().await);
    ok(vh
        .put_object()
        .bucket(b)
        .key(key)
        .body(ByteStream::from(data.clone()))
        .send()
        .await);
    let got = ok(vh.get_object().bucket(b).key(key).send().await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&data));
    let listed = ok(vh.list_objects_v2().bucket(b).prefix("2024/").send().await);
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, [key]);
    let head = ok(vh.head_object().bucket(b).key(key).send().await);
    assert_eq!(head.content_length(), Some(data.len() as i64));
    // ListBuckets goes to the domain itself.
    let buckets = ok(vh.list_buckets().send().await);
    let names: Vec<_> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, [b]);
    assert_err(
        vh.get_object().bucket(b).key("missing").send().await,
        404,
        "NoSuchKey",
    );
    assert_err(
        vh.get_object()
            .bucket("no-such-bucket-zz")
            .key("k")
            .send()
            .await,
        404,
        "NoSuchBucket",
    );

    // The SDK really used the virtual-hosted form (bucket in the Host, any port).
    let sent = hosts.lock().unwrap().clone();
    let bucket_host = format!("{b}.{DOMAIN}:{port}");
    assert!(
        sent.iter().filter(|h| **h == bucket_host).count() >= 5,
        "{sent:?}"
    );
    assert!(sent.contains(&format!("{DOMAIN}:{port}")), "{sent:?}");

    // Path-style keeps working on the same gateway: by IP, and by a host name that is not under
    // the domain.
    let by_ip = client(&cluster, Checksums::Default);
    let got = ok(by_ip.get_object().bucket(b).key(key).send().await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&data));
    ok(by_ip
        .put_object()
        .bucket(b)
        .key("from-path-style")
        .body(ByteStream::from_static(b"path"))
        .send()
        .await);
    let by_name = Client::from_conf(
        by_ip
            .config()
            .to_builder()
            .endpoint_url(format!("http://localhost:{port}"))
            .build(),
    );
    let got = ok(by_name
        .get_object()
        .bucket(b)
        .key("from-path-style")
        .send()
        .await);
    assert_eq!(body_bytes(got).await, b"path");
    let got = ok(vh
        .get_object()
        .bucket(b)
        .key("from-path-style")
        .send()
        .await);
    assert_eq!(body_bytes(got).await, b"path");
}
