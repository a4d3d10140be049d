//! The conformance suite: one set of cases, generic over [`MetadataStore`], that every backend
//! must pass. A backend's test file does
//!
//! ```ignore
//! mod conformance;
//! conformance_tests!(my_factory);
//! ```
//!
//! where `my_factory` is an `async fn() -> Option<conformance::TestStore>` returning a FRESH,
//! EMPTY store per call (or `None` when the backend is not available: every case then returns
//! at once, and the backend's test file prints the one `skipped:` line). The macro expands to
//! one `#[tokio::test(flavor = "multi_thread")]` per case; no case depends on another.
//!
//! The cases assert what the gateway relies on (the doc comments of the trait): error variants,
//! record contents, listing order and pagination, ref counts, atomicity of racing writers.

#![allow(dead_code)]

pub mod cases;
pub mod cases_chunks;
pub mod cases_listing;
pub mod cases_multipart;
pub mod cases_races;
pub mod cases_review;
pub mod util;

use sdfbs_metadata::MetadataStore;
use std::sync::Arc;

/// A store under test, plus whatever must live as long as it (a temp dir, a session).
pub struct TestStore {
    pub store: Arc<dyn MetadataStore>,
    /// Dropped after the case (e.g. a `tempfile::TempDir`).
    pub keep_alive: Box<dyn std::any::Any + Send + Sync>,
}

/// Expands to one test per conformance case. `$factory` is a path to an
/// `async fn() -> Option<TestStore>`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            cases::bucket_create_get_list_delete,
            cases::bucket_racing_creates_one_winner,
            cases::bucket_delete_refused_while_not_empty,
            cases::bucket_versioning_state,
            cases::commit_get_and_manifest,
            cases::reads_for_get_match_separate_calls,
            cases::commit_into_missing_bucket_refused,
            cases::overwrite_releases_refs_of_replaced_version,
            cases::delete_releases_refs,
            cases::delete_marker_is_current_but_not_listed,
            cases::conditional_if_none_match_star,
            cases::conditional_if_match,
            cases::racing_if_none_match_star_one_winner,
            cases::concurrent_commits_all_listable,
            cases::refused_commit_does_not_disturb_concurrent_ones,
            cases::nodes_heartbeat_and_state,
            cases::node_events_history,
            cases::access_keys_and_permissions,
            cases::leases_one_holder,
            cases::settings_get_or_init,
            cases::stats_follow_commits_and_deletes,
            cases_listing::list_prefix_and_delimiter_combinations,
            cases_listing::list_special_keys_in_byte_order,
            cases_listing::list_long_keys,
            cases_listing::list_2500_keys_in_pages,
            cases_listing::list_folded_prefixes_across_pages,
            cases_listing::list_start_after_and_max_keys_edges,
            cases_listing::list_isolated_between_buckets,
            cases_multipart::multipart_stitches_in_given_order,
            cases_multipart::multipart_part_replacement_and_listing,
            cases_multipart::multipart_abort_releases_refs,
            cases_multipart::multipart_list_uploads,
            cases_multipart::multipart_complete_errors,
            cases_chunks::chunk_replicas_add_drop,
            cases_chunks::under_replicated_chunks_found,
            cases_chunks::unreferenced_chunks_and_gc,
            cases_chunks::chunks_on_node_paged,
            cases_chunks::dedup_shares_chunk_records,
            cases_races::delete_bucket_racing_commits_hides_nothing,
            cases_races::delete_bucket_racing_uploads_hides_nothing,
            cases_races::racing_uploads_of_one_part_number_keep_one,
            cases_races::complete_racing_complete_and_abort,
            cases_races::racing_overwrites_release_every_replaced_version,
            cases_races::racing_deletes_and_overwrites_of_one_key,
            cases_races::gc_delete_racing_reuse_keeps_referenced_chunk,
            cases_review::review_put_racing_put_and_delete_of_one_key_is_listed,
            cases_review::review_abort_cut_short_can_be_retried,
            cases_review::review_complete_cut_short_can_be_retried,
            cases_review::review_delete_bucket_cut_short_leaves_keys_writable,
            cases_review::review_reads_follow_a_recreated_bucket,
        );
    };
    (@cases $factory:path; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let Some(test_store) = $factory().await else {
                    return;
                };
                $crate::conformance::$module::$case(test_store.store.clone()).await;
                drop(test_store);
            }
        )*
    };
}
