//! The state every request handler shares: the metadata store, the chunk pipeline and the
//! region name. One `Arc<Gateway>` is built at startup and handed to the S3 layer
//! (`s3::build_service`) and the admin router.

use std::sync::Arc;

/// Everything the S3 layer needs to serve a request.
pub struct Gateway {
    /// All cluster state (buckets, objects, manifests, chunks, nodes, keys).
    pub meta: Arc<dyn sdfbs_metadata::MetadataStore>,
    /// Writes object bodies as replicated chunks and reads them back.
    pub chunks: Arc<crate::pipeline::ChunkStore>,
    /// The region the S3 API reports (GetBucketLocation, SigV4 scope); default "us-east-1".
    pub region: String,
}
