//! The embedded backend: one redb file. (Being written; see issue 3.)
