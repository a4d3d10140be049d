//! Credentials bootstrap against a real embedded metadata store: generated secrets are kept
//! across restarts, the environment wins when set, and there is only ever one root key.

use sdfbs_gateway::credentials::{bootstrap, Given};
use sdfbs_gateway::server::open_metadata;

fn env_root(access: &str, secret: &str) -> Given {
    Given {
        root_access_key: Some(access.into()),
        root_secret_key: Some(secret.into()),
        ..Given::default()
    }
}

#[tokio::test]
async fn generated_credentials_are_kept_and_the_root_key_is_unique() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = format!("embedded:{}", dir.path().join("meta.redb").display());
    let meta = open_metadata(&spec).await.expect("open");

    // Nothing given: generated once, the same the second time.
    let first = bootstrap(meta.as_ref(), Given::default())
        .await
        .expect("bootstrap");
    let again = bootstrap(meta.as_ref(), Given::default())
        .await
        .expect("bootstrap");
    assert_eq!(first.root_access_key, again.root_access_key);
    assert_eq!(first.root_secret_key, again.root_secret_key);
    assert_eq!(first.admin_token, again.admin_token);
    assert_eq!(first.cluster_secret, again.cluster_secret);
    let record = meta
        .get_access_key(&first.root_access_key)
        .await
        .expect("get")
        .expect("root key record");
    assert!(record.is_root && record.can_create_buckets);
    assert_eq!(record.secret_key, first.root_secret_key);

    // The environment wins, and the previous root key stops working.
    let env = bootstrap(
        meta.as_ref(),
        env_root("ENVROOTKEY0000000001", "env-secret"),
    )
    .await
    .expect("bootstrap");
    assert_eq!(env.root_access_key, "ENVROOTKEY0000000001");
    assert!(meta
        .get_access_key(&first.root_access_key)
        .await
        .expect("get")
        .is_none());
    let roots: Vec<String> = meta
        .list_access_keys()
        .await
        .expect("list")
        .into_iter()
        .filter(|k| k.is_root)
        .map(|k| k.access_key_id)
        .collect();
    assert_eq!(roots, vec!["ENVROOTKEY0000000001".to_string()]);

    // A changed secret for the same id replaces the record.
    bootstrap(meta.as_ref(), env_root("ENVROOTKEY0000000001", "rotated"))
        .await
        .expect("bootstrap");
    let record = meta
        .get_access_key("ENVROOTKEY0000000001")
        .await
        .expect("get")
        .expect("record");
    assert_eq!(record.secret_key, "rotated");

    // Half a root key is refused with a message naming both variables.
    let half = Given {
        root_access_key: Some("X".into()),
        ..Given::default()
    };
    let err = bootstrap(meta.as_ref(), half).await.expect_err("refused");
    assert!(err.to_string().contains("SDFBS_ROOT_SECRET_KEY"));
}
