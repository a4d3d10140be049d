//! The ScyllaDB/Cassandra backend. (Being written; see issue 3.)
