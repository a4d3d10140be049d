//! The `sdfbs` binary: parses the command line and runs the chosen command. Everything else
//! lives in the `sdfbs_gateway` library.

fn main() {}
