//! Access keys already read, so that `get_access_key` (once per signed request) usually needs
//! no trip to the blocking pool.
//!
//! The embedded store is opened by one process only (redb locks the file), and every write of
//! an access key goes through this process's `EmbeddedStore`, so an in-memory copy is exact as
//! long as every such write clears it. The race to close is a reader that read the old record
//! from a snapshot taken before a write committed and inserts it after the write cleared the
//! cache: each clear bumps a generation, and a reader inserts only if the generation is the
//! one it saw before it read. A write clears the cache after its commit and before it returns,
//! so a revoked permission or a deleted key applies to the very next request.

use crate::AccessKeyRecord;
use std::collections::HashMap;
use std::sync::Mutex;

/// At most this many keys are kept; only keys that exist are ever inserted, so this bounds
/// memory however many unknown key ids requests carry.
const MAX_KEYS: usize = 10_000;

#[derive(Default)]
pub(super) struct KeyCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    generation: u64,
    keys: HashMap<String, AccessKeyRecord>,
}

/// What a lookup found: the record, or the generation to hand back to [`KeyCache::insert`].
pub(super) enum Lookup {
    Hit(AccessKeyRecord),
    Miss(u64),
}

impl KeyCache {
    pub(super) fn lookup(&self, id: &str) -> Lookup {
        let state = self.lock();
        match state.keys.get(id) {
            Some(record) => Lookup::Hit(record.clone()),
            None => Lookup::Miss(state.generation),
        }
    }

    /// Keeps `record`, read after a [`Lookup::Miss`] that returned `generation`, unless an
    /// access key was written since.
    pub(super) fn insert(&self, generation: u64, record: &AccessKeyRecord) {
        let mut state = self.lock();
        if state.generation == generation && state.keys.len() < MAX_KEYS {
            state
                .keys
                .insert(record.access_key_id.clone(), record.clone());
        }
    }

    /// Forgets every key: called after any write of an access key, committed or not.
    pub(super) fn clear(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.keys.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain map and counter, valid even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, secret: &str) -> AccessKeyRecord {
        AccessKeyRecord {
            access_key_id: id.into(),
            secret_key: secret.into(),
            name: String::new(),
            created: Default::default(),
            is_root: false,
            permissions: Default::default(),
            can_create_buckets: false,
        }
    }

    #[test]
    fn a_record_read_before_a_write_is_not_kept_after_it() {
        let cache = KeyCache::default();
        let Lookup::Miss(seen) = cache.lookup("AK1") else {
            panic!("empty cache hit")
        };
        // A write commits and clears while the reader is still reading the old record.
        cache.clear();
        cache.insert(seen, &record("AK1", "old"));
        assert!(matches!(cache.lookup("AK1"), Lookup::Miss(_)));
    }

    #[test]
    fn a_record_read_with_no_write_in_between_is_kept_until_the_next_write() {
        let cache = KeyCache::default();
        let Lookup::Miss(seen) = cache.lookup("AK1") else {
            panic!("empty cache hit")
        };
        cache.insert(seen, &record("AK1", "s1"));
        match cache.lookup("AK1") {
            Lookup::Hit(r) => assert_eq!(r.secret_key, "s1"),
            Lookup::Miss(_) => panic!("the record read was not kept"),
        }
        cache.clear();
        assert!(matches!(cache.lookup("AK1"), Lookup::Miss(_)));
    }
}
