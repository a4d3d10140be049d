//! aws-sdk-s3 against a real cluster: every S3 operation of issue 4, with the SDK's default
//! checksum settings and with `WhenRequired`, asserting what an SDK user sees (bytes by
//! SHA-256, ETags, headers, listings, HTTP status and S3 error codes).
//!
//! Each test starts its own cluster (a gateway and three chunkd processes) and stops it when it
//! ends. The tests are split by operation family into the modules under `tests/sdk/`. Every
//! test body runs on both metadata backends (`on_each_backend!`): `NAME::embedded`, and
//! `NAME::cassandra` on a fresh keyspace of the node named by `SDFBS_TEST_SCYLLA` (skipped
//! without it; `cargo test --test sdk cassandra` runs only those).

mod common;

#[path = "sdk/access.rs"]
mod access;
#[path = "sdk/attributes.rs"]
mod attributes;
#[path = "sdk/bad_input.rs"]
mod bad_input;
#[path = "sdk/buckets.rs"]
mod buckets;
#[path = "sdk/copy.rs"]
mod copy;
#[path = "sdk/integrity.rs"]
mod integrity;
#[path = "sdk/listing.rs"]
mod listing;
#[path = "sdk/multipart.rs"]
mod multipart;
#[path = "sdk/objects.rs"]
mod objects;
#[path = "sdk/signed_bodies.rs"]
mod signed_bodies;
#[path = "sdk/versions.rs"]
mod versions;
#[path = "sdk/virtual_hosts.rs"]
mod virtual_hosts;
