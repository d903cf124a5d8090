//! Custom Command documents: the `documents` row (type, default / latest version, tags) and one
//! `document_versions` row per version (content, hash, derived facts).
//!
//! Every rule that needs the current state is checked inside one transaction that first locks
//! what the rule depends on: the document's row (`FOR UPDATE`) for version changes, so two
//! concurrent updates cannot both create "version 2"; a transaction-scoped advisory lock for
//! creation, so the document limit holds across servers. Version numbers are never reused:
//! `last_assigned` remembers the highest ever handed out.

use deadpool_postgres::{GenericClient, Transaction};
use fleetrun_core::documents::{
    check_new_document, check_new_version, check_version_delete, Document, DocumentFormat,
    DocumentVersion, LatestVersion, NewDocument, NewDocumentVersion,
};
use fleetrun_core::CoreError;
use tokio_postgres::Row;

use super::listing::{key_page_sql, BuiltQuery};
use super::{col, col_u32, execute, query, query_listing, query_one, query_opt, Error, Result};

const DOCUMENT_COLUMNS: &str =
    "d.name, d.document_type, d.created_at, d.default_version, d.latest_version, d.tags_json";
const VERSION_COLUMNS: &str = "v.name, v.version, v.content, v.format, v.hash, \
     v.schema_version, v.description, v.platform_types, v.version_name, v.display_name, \
     v.target_type, v.created_at";

/// Serialises document creation across servers (the limit counts every document).
const CREATE_LOCK: i64 = 0x666c_6565_7464_6f63;

fn document_from_row(row: &Row) -> Result<Document> {
    Ok(Document {
        name: col(row, 0)?,
        document_type: col(row, 1)?,
        created_at: col(row, 2)?,
        default_version: col_u32(row, 3)?,
        latest_version: col_u32(row, 4)?,
        tags: serde_json::from_str(col(row, 5)?)?,
    })
}

/// A version from the columns of [`VERSION_COLUMNS`] starting at `at`.
fn version_from_row(row: &Row, at: usize) -> Result<DocumentVersion> {
    let format: &str = col(row, at + 3)?;
    Ok(DocumentVersion {
        name: col(row, at)?,
        version: col_u32(row, at + 1)?,
        content: col(row, at + 2)?,
        format: DocumentFormat::parse(format)
            .ok_or_else(|| Error::Corrupt(format!("document format {format:?}")))?,
        hash: col(row, at + 4)?,
        schema_version: col(row, at + 5)?,
        description: col(row, at + 6)?,
        platform_types: serde_json::from_str(col(row, at + 7)?)?,
        version_name: col(row, at + 8)?,
        display_name: col(row, at + 9)?,
        target_type: col(row, at + 10)?,
        created_at: col(row, at + 11)?,
    })
}

fn missing(name: &str) -> Error {
    CoreError::UnknownDocument {
        name: name.to_owned(),
    }
    .into()
}

fn unknown_version(name: &str, v: u32) -> Error {
    CoreError::UnknownDocumentVersion {
        name: name.to_owned(),
        version: v.to_string(),
    }
    .into()
}

async fn get_document<C: GenericClient>(c: &C, name: &str, lock: bool) -> Result<Option<Document>> {
    let sql = format!(
        "SELECT {DOCUMENT_COLUMNS} FROM documents d WHERE d.name = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    query_opt(c, &sql, &[&name])
        .await?
        .map(|row| document_from_row(&row))
        .transpose()
}

/// The document, locked for the rest of the transaction; `UnknownDocument` when there is none.
async fn lock_document(tx: &Transaction<'_>, name: &str) -> Result<Document> {
    get_document(tx, name, true)
        .await?
        .ok_or_else(|| missing(name))
}

async fn insert_version(
    tx: &Transaction<'_>,
    name: &str,
    version: u32,
    v: &NewDocumentVersion,
) -> Result<()> {
    let inserted = execute(
        tx,
        "INSERT INTO document_versions (name, version, content, format, hash, schema_version,
             description, platform_types, version_name, display_name, target_type, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &name,
            &i64::from(version),
            &v.content,
            &v.format.as_str(),
            &v.hash,
            &v.schema_version,
            &v.description,
            &serde_json::to_string(&v.platform_types)?,
            &v.version_name,
            &v.display_name,
            &v.target_type,
            &v.created_at,
        ],
    )
    .await;
    match inserted {
        Err(e) if e.unique_violation() == Some("document_version_names") => {
            Err(duplicate_version_name(name, v.version_name.as_deref()))
        }
        other => other.map(|_| ()),
    }
}

fn duplicate_version_name(name: &str, vn: Option<&str>) -> Error {
    CoreError::DuplicateDocumentVersionName {
        name: name.to_owned(),
        version_name: vn.unwrap_or_default().to_owned(),
    }
    .into()
}

fn already_exists(name: &str) -> Error {
    CoreError::DocumentAlreadyExists {
        name: name.to_owned(),
    }
    .into()
}

pub(crate) async fn create(
    tx: &Transaction<'_>,
    doc: &NewDocument,
    max_documents: usize,
) -> Result<Document> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CREATE_LOCK])
        .await?;
    let taken = get_document(tx, &doc.name, false).await?.is_some();
    let row = query_one(tx, "SELECT COUNT(*) FROM documents", &[]).await?;
    let count: i64 = col(&row, 0)?;
    check_new_document(
        &doc.name,
        taken,
        usize::try_from(count).unwrap_or(usize::MAX),
        max_documents,
    )?;
    let inserted = execute(
        tx,
        "INSERT INTO documents (name, document_type, created_at, default_version, latest_version,
             last_assigned, tags_json)
         VALUES ($1, $2, $3, 1, 1, 1, $4)",
        &[
            &doc.name,
            &doc.document_type,
            &doc.first.created_at,
            &serde_json::to_string(&doc.tags)?,
        ],
    )
    .await;
    match inserted {
        // Only reachable without the advisory lock (never), kept as the domain error regardless.
        Err(e) if e.unique_violation() == Some("documents_pkey") => {
            return Err(already_exists(&doc.name))
        }
        other => other.map(|_| ())?,
    }
    insert_version(tx, &doc.name, 1, &doc.first).await?;
    get_document(tx, &doc.name, false)
        .await?
        .ok_or_else(|| missing(&doc.name))
}

pub(crate) async fn add_version(
    tx: &Transaction<'_>,
    name: &str,
    expected_latest: u32,
    v: &NewDocumentVersion,
    max_versions: u32,
) -> Result<Document> {
    let doc = lock_document(tx, name).await?;
    let row = query_one(
        tx,
        "SELECT v.hash, (SELECT COUNT(*) FROM document_versions WHERE name = $1), d.last_assigned
         FROM documents d JOIN document_versions v ON v.name = d.name AND v.version = $2
         WHERE d.name = $1",
        &[&name, &i64::from(doc.latest_version)],
    )
    .await?;
    let latest_hash: &str = col(&row, 0)?;
    let versions: i64 = col(&row, 1)?;
    let last = col_u32(&row, 2)?;
    let version_name_taken = match &v.version_name {
        Some(vn) => query_opt(
            tx,
            "SELECT version FROM document_versions WHERE name = $1 AND version_name = $2",
            &[&name, vn],
        )
        .await?
        .is_some(),
        None => false,
    };
    let current = LatestVersion {
        latest: doc.latest_version,
        hash: latest_hash,
        versions: u32::try_from(versions).unwrap_or(u32::MAX),
    };
    check_new_version(
        name,
        expected_latest,
        v,
        current,
        version_name_taken,
        max_versions,
    )?;
    let version = last.saturating_add(1);
    insert_version(tx, name, version, v).await?;
    execute(
        tx,
        "UPDATE documents SET latest_version = $2, last_assigned = $2 WHERE name = $1",
        &[&name, &i64::from(version)],
    )
    .await?;
    get_document(tx, name, false)
        .await?
        .ok_or_else(|| missing(name))
}

pub(crate) async fn document<C: GenericClient>(c: &C, name: &str) -> Result<Option<Document>> {
    get_document(c, name, false).await
}

pub(crate) async fn version<C: GenericClient>(
    c: &C,
    name: &str,
    version: u32,
) -> Result<Option<DocumentVersion>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM document_versions v WHERE v.name = $1 AND v.version = $2"
    );
    query_opt(c, &sql, &[&name, &i64::from(version)])
        .await?
        .map(|row| version_from_row(&row, 0))
        .transpose()
}

pub(crate) async fn versions<C: GenericClient>(c: &C, name: &str) -> Result<Vec<DocumentVersion>> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM document_versions v WHERE v.name = $1 ORDER BY v.version"
    );
    query(c, &sql, &[&name])
        .await?
        .iter()
        .map(|r| version_from_row(r, 0))
        .collect()
}

pub(crate) async fn set_default(tx: &Transaction<'_>, name: &str, v: u32) -> Result<Document> {
    lock_document(tx, name).await?;
    if version(tx, name, v).await?.is_none() {
        return Err(unknown_version(name, v));
    }
    execute(
        tx,
        "UPDATE documents SET default_version = $2 WHERE name = $1",
        &[&name, &i64::from(v)],
    )
    .await?;
    get_document(tx, name, false)
        .await?
        .ok_or_else(|| missing(name))
}

pub(crate) async fn delete(tx: &Transaction<'_>, name: &str, v: Option<u32>) -> Result<()> {
    let doc = lock_document(tx, name).await?;
    if let Some(v) = v {
        if version(tx, name, v).await?.is_none() {
            return Err(unknown_version(name, v));
        }
        let row = query_one(
            tx,
            "SELECT COUNT(*) FROM document_versions WHERE name = $1",
            &[&name],
        )
        .await?;
        let count: i64 = col(&row, 0)?;
        let versions = u32::try_from(count).unwrap_or(u32::MAX);
        if !check_version_delete(name, v, doc.default_version, versions)? {
            execute(
                tx,
                "DELETE FROM document_versions WHERE name = $1 AND version = $2",
                &[&name, &i64::from(v)],
            )
            .await?;
            execute(
                tx,
                "UPDATE documents SET latest_version =
                     (SELECT MAX(version) FROM document_versions WHERE name = $1)
                 WHERE name = $1",
                &[&name],
            )
            .await?;
            return Ok(());
        }
    }
    // The versions go with the document (ON DELETE CASCADE).
    execute(tx, "DELETE FROM documents WHERE name = $1", &[&name]).await?;
    Ok(())
}

/// The query of one page of documents by name, strictly after `after`, each with its default
/// version (`v.version IS NULL` flags a missing one), in one statement (one snapshot). Read
/// through the primary key; the version is one primary-key lookup per document. The LATERAL
/// subquery's LIMIT keeps the planner from flattening it into a merge join, which reads every
/// version of every listed document and, after a key, every version before it.
pub(crate) fn page_sql(after: Option<&str>, limit: usize) -> BuiltQuery {
    key_page_sql(
        &format!(
            "SELECT {DOCUMENT_COLUMNS}, v.version IS NULL, {VERSION_COLUMNS}
             FROM documents d
             LEFT JOIN LATERAL (
                 SELECT {VERSION_COLUMNS} FROM document_versions v
                 WHERE v.name = d.name AND v.version = d.default_version LIMIT 1
             ) v ON TRUE"
        ),
        "d.name",
        after,
        limit,
    )
}

pub(crate) async fn page(
    c: &tokio_postgres::Client,
    q: &BuiltQuery,
) -> Result<Vec<(Document, DocumentVersion)>> {
    query_listing(c, &q.sql, &q.params)
        .await?
        .iter()
        .map(|row| {
            let doc = document_from_row(row)?;
            if col::<bool>(row, 6)? {
                return Err(Error::Corrupt(format!(
                    "document {} lacks its default version",
                    doc.name
                )));
            }
            Ok((doc, version_from_row(row, 7)?))
        })
        .collect()
}
