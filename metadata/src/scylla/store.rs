//! `MetadataStore` for `ScyllaStore`: each method delegates to the module that holds its
//! table logic (`objects`, `multipart`, `chunks`, `admin`).

use super::chunks::ChunkFilter;
use super::ScyllaStore;
use crate::*;
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
impl MetadataStore for ScyllaStore {
    async fn create_bucket(&self, record: BucketRecord) -> Result<()> {
        self.bucket_create(record).await
    }
    async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        self.bucket(name).await
    }
    async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        self.buckets().await
    }
    async fn delete_bucket(&self, name: &str) -> Result<()> {
        self.bucket_delete(name).await
    }
    async fn set_bucket_versioning(&self, name: &str, state: VersioningState) -> Result<()> {
        self.bucket_set_versioning(name, state).await
    }

    async fn commit_object(
        &self,
        bucket: &BucketRecord,
        object: ObjectRecord,
        manifest: Vec<ManifestEntry>,
        placements: Vec<ChunkPlacement>,
        condition: PutCondition,
    ) -> Result<CommitOutcome> {
        self.commit_version(bucket, object, &manifest, &placements, &condition, true)
            .await
    }
    async fn get_object(&self, bucket: &BucketRecord, key: &str) -> Result<Option<ObjectRecord>> {
        self.current_object(bucket, key).await
    }
    async fn get_manifest(&self, version_id: &str) -> Result<Vec<ManifestEntry>> {
        // Like the embedded backend: `NoSuchKey` for a version without a manifest (unknown,
        // or replaced and released), so a reader racing an overwrite never gets an empty list.
        self.read_manifest(version_id)
            .await?
            .ok_or(MetaError::NoSuchKey)
    }
    async fn get_manifest_for_read(
        &self,
        version_id: &str,
        records: usize,
    ) -> Result<ReadManifest> {
        self.manifest_for_read(version_id, records).await
    }
    async fn get_bucket_and_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(BucketRecord, Option<ObjectRecord>)>> {
        Ok(self
            .bucket_and_head(bucket, key)
            .await?
            .map(|(bucket, head)| (bucket, head.current)))
    }
    async fn get_object_for_read(
        &self,
        bucket: &str,
        key: &str,
        records: usize,
    ) -> Result<Option<ObjectForRead>> {
        self.object_for_read(bucket, key, records).await
    }
    async fn delete_object(
        &self,
        bucket: &BucketRecord,
        key: &str,
    ) -> Result<Option<ObjectRecord>> {
        self.delete_current(bucket, key).await
    }
    async fn list_objects(&self, bucket: &BucketRecord, query: &ListQuery) -> Result<ListPage> {
        self.list(bucket, query).await
    }

    async fn create_upload(&self, bucket: &BucketRecord, upload: UploadRecord) -> Result<()> {
        self.insert_upload(bucket, &upload).await
    }
    async fn get_upload(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
    ) -> Result<UploadRecord> {
        self.upload(bucket, key, upload_id).await
    }
    async fn put_part(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        part: PartRecord,
        placements: Vec<ChunkPlacement>,
    ) -> Result<()> {
        self.record_part(bucket, key, upload_id, part, placements)
            .await
    }
    async fn list_parts(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        after_part: u32,
        max: usize,
    ) -> Result<Vec<PartRecord>> {
        self.part_list(bucket, key, upload_id, after_part, max)
            .await
    }
    async fn list_uploads(
        &self,
        bucket: &BucketRecord,
        query: &UploadListQuery,
    ) -> Result<UploadListPage> {
        self.upload_list(bucket, query).await
    }
    async fn complete_upload(
        &self,
        bucket: &BucketRecord,
        upload_id: &str,
        object: ObjectRecord,
        part_numbers: &[u32],
        condition: PutCondition,
    ) -> Result<CommitOutcome> {
        self.complete(bucket, upload_id, object, part_numbers, condition)
            .await
    }
    async fn abort_upload(&self, bucket: &BucketRecord, key: &str, upload_id: &str) -> Result<()> {
        self.abort(bucket, key, upload_id).await
    }

    async fn get_chunk(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        self.chunk(id).await
    }
    async fn get_chunk_location(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        self.chunk_row(id).await
    }
    async fn add_replica(&self, id: &ChunkId, node: &str) -> Result<()> {
        self.change_replica(id, node, true).await
    }
    async fn drop_replica(&self, id: &ChunkId, node: &str) -> Result<()> {
        self.change_replica(id, node, false).await
    }
    async fn under_replicated_chunks(
        &self,
        replication: usize,
        healthy: &[NodeId],
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkRecord>> {
        self.walk_chunks(
            ChunkFilter::UnderReplicated {
                replication,
                healthy,
            },
            after,
            limit,
        )
        .await
    }
    async fn unreferenced_chunks(
        &self,
        unreferenced_before: UnixMillis,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkRecord>> {
        self.walk_chunks(
            ChunkFilter::Unreferenced {
                before: unreferenced_before,
            },
            after,
            limit,
        )
        .await
    }
    async fn delete_chunk_if_unreferenced(&self, id: &ChunkId) -> Result<bool> {
        self.delete_unreferenced(id).await
    }
    async fn chunks_on_node(
        &self,
        node: &str,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkRecord>> {
        self.walk_chunks(ChunkFilter::OnNode(node), after, limit)
            .await
    }

    async fn record_heartbeat(&self, heartbeat: Heartbeat) -> Result<NodeRecord> {
        self.heartbeat(heartbeat).await
    }
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        self.nodes().await
    }
    async fn set_node_state(&self, node: &str, state: AdminState) -> Result<()> {
        self.node_state(node, state).await
    }

    async fn record_node_event(&self, event: NodeEvent) -> Result<()> {
        self.node_event(event).await
    }
    async fn node_events(&self, node: Option<&str>, limit: usize) -> Result<Vec<NodeEvent>> {
        self.events(node, limit).await
    }

    async fn create_access_key(&self, key: AccessKeyRecord) -> Result<()> {
        self.key_create(key).await
    }
    async fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRecord>> {
        self.key(access_key_id).await
    }
    async fn list_access_keys(&self) -> Result<Vec<AccessKeyRecord>> {
        self.keys().await
    }
    async fn delete_access_key(&self, access_key_id: &str) -> Result<()> {
        self.key_delete(access_key_id).await
    }
    async fn set_permission(
        &self,
        access_key_id: &str,
        bucket: &str,
        permission: Option<Permission>,
    ) -> Result<()> {
        self.key_permission(access_key_id, bucket, permission).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.lease_acquire(name, holder, ttl).await
    }
    async fn renew_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.lease_renew(name, holder, ttl).await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.lease_release(name, holder).await
    }

    async fn setting_get_or_init(&self, name: &str, value: &str) -> Result<String> {
        self.setting_init(name, value).await
    }
    async fn get_setting(&self, name: &str) -> Result<Option<String>> {
        self.setting(name).await
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.statistics().await
    }
}
