//! `cql_ping HOST:PORT`: exits 0 when a CQL node answers `SELECT release_version FROM
//! system.local` (and prints the version), 1 otherwise. `scripts/cassandra.sh` polls it to know
//! when a freshly started Cassandra node is ready; it uses the same driver as the backend.

use scylla::client::session_builder::SessionBuilder;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let host = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9042".to_owned());
    match ping(&host).await {
        Ok(version) => println!("{version}"),
        Err(e) => {
            eprintln!("cql_ping: {host}: {e}");
            std::process::exit(1);
        }
    }
}

async fn ping(host: &str) -> Result<String, String> {
    let session = SessionBuilder::new()
        .known_node(host)
        .connection_timeout(Duration::from_secs(2))
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let result = session
        .query_unpaged("SELECT release_version FROM system.local", ())
        .await
        .map_err(|e| e.to_string())?;
    let rows = result.into_rows_result().map_err(|e| e.to_string())?;
    let (version,): (String,) = rows.single_row().map_err(|e| e.to_string())?;
    Ok(version)
}
