//! Virtual-hosted-style addressing: with `--s3-domain NAME`, a request whose `Host` is
//! `BUCKET.NAME` (with or without a port) addresses BUCKET, as `https://BUCKET.s3.amazonaws.com`
//! does on AWS; the path is then the key alone.
//!
//! s3s asks an [`S3Host`] for the bucket of every request whose `Host` is a name (never for an
//! IP address, which is always path-style). Its own `SingleDomain`/`MultiDomain` treat any
//! other host name as a bucket (CNAME-style) and compare the port as part of the name; here a
//! host that is not `BUCKET.NAME` is an ordinary path-style request instead, so clients that
//! reach the gateway as `localhost:9000`, by a load balancer's name or by IP keep working
//! exactly as without the option, and the port never matters.

use s3s::host::{S3Host, VirtualHost};
use s3s::S3Result;

/// The base domains of virtual-hosted-style requests (`--s3-domain`), lowercase, longest first
/// so that `s3.example.com` wins over `example.com` when both are given.
#[derive(Debug, Clone, Default)]
pub struct BucketDomains {
    domains: Vec<String>,
}

/// A `--s3-domain` value that is not a host name.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid --s3-domain {0:?}: give a host name such as s3.example.com (no scheme, port or path)"
)]
pub struct InvalidDomain(pub String);

impl BucketDomains {
    /// Checks and keeps `domains` (none: path-style only).
    pub fn new<I, S>(domains: I) -> Result<BucketDomains, InvalidDomain>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut checked = Vec::new();
        for domain in domains {
            let domain = domain.as_ref().trim().trim_end_matches('.');
            if !is_host_name(domain) {
                return Err(InvalidDomain(domain.to_string()));
            }
            checked.push(domain.to_ascii_lowercase());
        }
        checked.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        checked.dedup();
        Ok(BucketDomains { domains: checked })
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The bucket a `Host` header names, if it is `BUCKET.DOMAIN[:PORT]` for one of the domains.
    fn bucket_of(&self, host: &str) -> Option<String> {
        let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        self.domains.iter().find_map(|domain| {
            let bucket = name.strip_suffix(domain.as_str())?.strip_suffix('.')?;
            (!bucket.is_empty()).then(|| bucket.to_string())
        })
    }
}

/// `name` of `name:port`; an IPv6 literal in brackets is left alone.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            name
        }
        _ => host,
    }
}

/// Dot-separated labels of letters, digits and hyphens.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl S3Host for BucketDomains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        // A host without a bucket (another name, or the domain itself) is path-style: s3s
        // parses the path as `/bucket/key` when the VirtualHost has no bucket.
        Ok(match self.bucket_of(host) {
            Some(bucket) => VirtualHost::new(host).with_bucket(bucket),
            None => VirtualHost::new(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_is_the_label_before_a_domain_with_or_without_port() {
        let d = BucketDomains::new(["s3.localhost", "S3.Example.COM."]).unwrap();
        assert_eq!(d.bucket_of("photos.s3.localhost"), Some("photos".into()));
        assert_eq!(
            d.bucket_of("photos.s3.localhost:9000"),
            Some("photos".into())
        );
        assert_eq!(
            d.bucket_of("my.dotted.bucket.s3.example.com"),
            Some("my.dotted.bucket".into())
        );
        assert_eq!(
            d.bucket_of("Photos.S3.Example.Com:443"),
            Some("photos".into())
        );
        // Path-style: the domain itself, any other name, a name that merely ends alike.
        for host in [
            "s3.localhost",
            "s3.localhost:9000",
            "localhost:9000",
            "photos.xs3.localhost",
            ".s3.localhost",
            "example.com",
            "[::1]:9000",
        ] {
            assert_eq!(d.bucket_of(host), None, "{host}");
            assert!(
                d.parse_host_header(host).unwrap().bucket().is_none(),
                "{host}"
            );
        }
        assert_eq!(
            d.parse_host_header("b.s3.localhost:1").unwrap().bucket(),
            Some("b")
        );
    }

    #[test]
    fn the_longest_domain_wins() {
        let d = BucketDomains::new(["example.com", "s3.example.com"]).unwrap();
        assert_eq!(d.bucket_of("b.s3.example.com"), Some("b".into()));
        assert_eq!(d.bucket_of("b.example.com"), Some("b".into()));
    }

    #[test]
    fn domains_must_be_host_names() {
        for bad in [
            "",
            "http://s3.local",
            "s3.local:9000",
            "s3..local",
            "s3.local/x",
            "*.s3",
        ] {
            assert!(BucketDomains::new([bad]).is_err(), "{bad:?}");
        }
        assert!(BucketDomains::new(Vec::<String>::new()).unwrap().is_empty());
    }
}
