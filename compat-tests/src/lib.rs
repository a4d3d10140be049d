//! Test harness: starts real SDFBS clusters on loopback (being written; see issue 4).
