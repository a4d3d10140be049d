//! Small helpers between the driver and the metadata types: running a prepared statement and
//! decoding its rows, reading the outcome of a lightweight transaction, the versioned JSON
//! codec of stored records, and the text forms of enums stored in columns.

use crate::{AdminState, MetaError, Permission, Result, VersioningState};
use ::scylla::client::pager::TypedRowStream;
use ::scylla::client::session::Session;
use ::scylla::deserialize::row::DeserializeRow;
use ::scylla::response::query_result::QueryResult;
use ::scylla::serialize::batch::BatchValues;
use ::scylla::serialize::row::SerializeRow;
use ::scylla::statement::batch::Batch;
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::value::{CqlValue, Row};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Display;

/// Format version of the JSON records (`format` column). A later release that changes a
/// record keeps decoding this one.
pub(crate) const FORMAT: i32 = 1;

/// Maps a driver error to `MetaError::Backend`, naming what was being done.
pub(crate) fn backend<E: Display>(what: &'static str) -> impl FnOnce(E) -> MetaError {
    move |e| MetaError::Backend(format!("{what}: {e}"))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| MetaError::Corrupt(format!("cannot encode: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(format: Option<i32>, text: Option<&str>) -> Result<T> {
    match (format, text) {
        (Some(FORMAT), Some(text)) => serde_json::from_str(text)
            .map_err(|e| MetaError::Corrupt(format!("undecodable record: {e}"))),
        (Some(other), _) => Err(MetaError::Corrupt(format!(
            "record format {other} is newer than this release understands ({FORMAT})"
        ))),
        _ => Err(MetaError::Corrupt("record without format or body".into())),
    }
}

/// Runs a statement whose result is not needed.
pub(crate) async fn exec(
    session: &Session,
    stmt: &PreparedStatement,
    values: impl SerializeRow,
    what: &'static str,
) -> Result<()> {
    session
        .execute_unpaged(stmt, values)
        .await
        .map_err(backend(what))?;
    Ok(())
}

/// Runs a statement whose result is bounded (a single-row lookup or a `LIMIT`) and decodes
/// all its rows. Scans of unbounded size use [`scan`] instead.
pub(crate) async fn rows<T>(
    session: &Session,
    stmt: &PreparedStatement,
    values: impl SerializeRow,
    what: &'static str,
) -> Result<Vec<T>>
where
    T: for<'f, 'm> DeserializeRow<'f, 'm>,
{
    let result = session
        .execute_unpaged(stmt, values)
        .await
        .map_err(backend(what))?;
    let rows = result.into_rows_result().map_err(backend(what))?;
    let decoded = rows
        .rows::<T>()
        .map_err(backend(what))?
        .collect::<std::result::Result<Vec<T>, _>>()
        .map_err(backend(what))?;
    Ok(decoded)
}

/// The first row of a bounded statement, if any.
pub(crate) async fn first<T>(
    session: &Session,
    stmt: &PreparedStatement,
    values: impl SerializeRow,
    what: &'static str,
) -> Result<Option<T>>
where
    T: for<'f, 'm> DeserializeRow<'f, 'm>,
{
    let result = session
        .execute_unpaged(stmt, values)
        .await
        .map_err(backend(what))?;
    let rows = result.into_rows_result().map_err(backend(what))?;
    rows.maybe_first_row::<T>().map_err(backend(what))
}

/// A paged scan: the driver fetches one page (the statement's page size) at a time as the
/// stream is consumed, so memory stays bounded whatever the table size.
pub(crate) async fn scan<T>(
    session: &Session,
    stmt: &PreparedStatement,
    values: impl SerializeRow,
    what: &'static str,
) -> Result<TypedRowStream<T>>
where
    T: for<'f, 'm> DeserializeRow<'f, 'm>,
{
    let pager = session
        .execute_iter(stmt.clone(), values)
        .await
        .map_err(backend(what))?;
    pager.rows_stream::<T>().map_err(backend(what))
}

/// Reads the next row of a scan.
pub(crate) async fn next_row<T>(
    stream: &mut TypedRowStream<T>,
    what: &'static str,
) -> Result<Option<T>>
where
    T: for<'f, 'm> DeserializeRow<'f, 'm> + Unpin,
{
    stream.try_next().await.map_err(backend(what))
}

/// The outcome of a lightweight transaction. The result has an `[applied]` boolean column;
/// when the condition failed it also carries the row's current values (Cassandra returns the
/// columns of the condition or the whole row for `IF NOT EXISTS`; Scylla always returns the
/// row), so callers only read columns they know to be in their own condition.
pub(crate) struct Lwt {
    pub applied: bool,
    columns: Vec<(String, Option<CqlValue>)>,
}

impl Lwt {
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        match self.value(name) {
            Some(CqlValue::Text(s)) | Some(CqlValue::Ascii(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub(crate) fn boolean(&self, name: &str) -> Option<bool> {
        match self.value(name) {
            Some(CqlValue::Boolean(b)) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn bigint(&self, name: &str) -> Option<i64> {
        match self.value(name) {
            Some(CqlValue::BigInt(v)) => Some(*v),
            _ => None,
        }
    }

    fn value(&self, name: &str) -> Option<&CqlValue> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_ref())
    }
}

/// Runs a conditional batch (statements of one partition, at least one with `IF ...`) and
/// reads whether it applied.
pub(crate) async fn lwt_batch(
    session: &Session,
    batch: &Batch,
    values: impl BatchValues,
    what: &'static str,
) -> Result<Lwt> {
    let result = session.batch(batch, values).await.map_err(backend(what))?;
    parse_lwt(result, what)
}

/// Runs a conditional statement (`IF ...`) and reads whether it applied.
pub(crate) async fn lwt(
    session: &Session,
    stmt: &PreparedStatement,
    values: impl SerializeRow,
    what: &'static str,
) -> Result<Lwt> {
    let result = session
        .execute_unpaged(stmt, values)
        .await
        .map_err(backend(what))?;
    parse_lwt(result, what)
}

fn parse_lwt(result: QueryResult, what: &'static str) -> Result<Lwt> {
    let rows = result.into_rows_result().map_err(backend(what))?;
    let names: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let row: Option<Row> = rows.maybe_first_row::<Row>().map_err(backend(what))?;
    let columns: Vec<(String, Option<CqlValue>)> = match row {
        Some(row) => names.into_iter().zip(row.columns).collect(),
        None => Vec::new(),
    };
    let applied = columns
        .iter()
        .find(|(n, _)| n == "[applied]")
        .and_then(|(_, v)| match v {
            Some(CqlValue::Boolean(b)) => Some(*b),
            _ => None,
        })
        .ok_or_else(|| {
            MetaError::Backend(format!("{what}: the server returned no [applied] column"))
        })?;
    Ok(Lwt { applied, columns })
}

pub(crate) fn versioning_to_text(v: VersioningState) -> &'static str {
    match v {
        VersioningState::Unversioned => "Unversioned",
        VersioningState::Enabled => "Enabled",
        VersioningState::Suspended => "Suspended",
    }
}

pub(crate) fn versioning_from_text(s: &str) -> Result<VersioningState> {
    match s {
        "Unversioned" | "" => Ok(VersioningState::Unversioned),
        "Enabled" => Ok(VersioningState::Enabled),
        "Suspended" => Ok(VersioningState::Suspended),
        other => Err(MetaError::Corrupt(format!(
            "unknown versioning state `{other}`"
        ))),
    }
}

pub(crate) fn admin_state_to_text(s: AdminState) -> &'static str {
    match s {
        AdminState::Active => "Active",
        AdminState::Draining => "Draining",
        AdminState::Removed => "Removed",
    }
}

pub(crate) fn admin_state_from_text(s: &str) -> Result<AdminState> {
    match s {
        "Active" | "" => Ok(AdminState::Active),
        "Draining" => Ok(AdminState::Draining),
        "Removed" => Ok(AdminState::Removed),
        other => Err(MetaError::Corrupt(format!("unknown node state `{other}`"))),
    }
}

pub(crate) fn permission_to_text(p: Permission) -> &'static str {
    match p {
        Permission::Read => "Read",
        Permission::Write => "Write",
        Permission::Owner => "Owner",
    }
}

pub(crate) fn permission_from_text(s: &str) -> Result<Permission> {
    match s {
        "Read" => Ok(Permission::Read),
        "Write" => Ok(Permission::Write),
        "Owner" => Ok(Permission::Owner),
        other => Err(MetaError::Corrupt(format!("unknown permission `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_text() {
        for v in [
            VersioningState::Unversioned,
            VersioningState::Enabled,
            VersioningState::Suspended,
        ] {
            assert_eq!(versioning_from_text(versioning_to_text(v)).unwrap(), v);
        }
        for s in [
            AdminState::Active,
            AdminState::Draining,
            AdminState::Removed,
        ] {
            assert_eq!(admin_state_from_text(admin_state_to_text(s)).unwrap(), s);
        }
        for p in [Permission::Read, Permission::Write, Permission::Owner] {
            assert_eq!(permission_from_text(permission_to_text(p)).unwrap(), p);
        }
        assert!(permission_from_text("root").is_err());
    }

    #[test]
    fn codec_refuses_unknown_formats() {
        let text = encode(&vec![1u32, 2]).unwrap();
        assert_eq!(
            decode::<Vec<u32>>(Some(FORMAT), Some(&text)).unwrap(),
            vec![1, 2]
        );
        assert!(matches!(
            decode::<Vec<u32>>(Some(2), Some(&text)),
            Err(MetaError::Corrupt(_))
        ));
        assert!(matches!(
            decode::<Vec<u32>>(None, None),
            Err(MetaError::Corrupt(_))
        ));
    }
}
