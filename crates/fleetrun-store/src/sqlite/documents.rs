//! Custom Command documents: the `documents` row (type, default / latest version, tags) and one
//! `document_versions` row per version (content, hash, derived facts).
//!
//! Every rule that needs the current state (name taken, document limit, duplicate content or
//! version name, expected latest version, default-version deletion) is checked inside one
//! IMMEDIATE transaction, so two concurrent updates cannot both create "version 2". Version numbers
//! are never reused: `last_assigned` remembers the highest ever handed out.

use fleetrun_core::documents::{
    check_new_document, check_new_version, check_version_delete, Document, DocumentFormat,
    DocumentVersion, LatestVersion, NewDocument, NewDocumentVersion,
};
use fleetrun_core::CoreError;
use rusqlite::{params, Connection, Row, Savepoint};

use super::commands::{key_page_sql, query_built, BuiltQuery};
use super::{Error, Result};

const DOCUMENT_COLUMNS: &str =
    "name, document_type, created_at, default_version, latest_version, tags_json";
const VERSION_COLUMNS: &str = "name, version, content, format, hash, schema_version, description, \
     platform_types, version_name, display_name, target_type, created_at";

fn document_from_row(row: &Row<'_>) -> Result<Document> {
    let tags: String = row.get(5)?;
    Ok(Document {
        name: row.get(0)?,
        document_type: row.get(1)?,
        created_at: row.get(2)?,
        default_version: row.get(3)?,
        latest_version: row.get(4)?,
        tags: serde_json::from_str(&tags)?,
    })
}

/// A version from the columns of [`VERSION_COLUMNS`] starting at `at`.
fn version_from_row(row: &Row<'_>, at: usize) -> Result<DocumentVersion> {
    let format: String = row.get(at + 3)?;
    let platforms: String = row.get(at + 7)?;
    Ok(DocumentVersion {
        name: row.get(at)?,
        version: row.get(at + 1)?,
        content: row.get(at + 2)?,
        format: DocumentFormat::parse(&format)
            .ok_or_else(|| Error::Corrupt(format!("document format {format:?}")))?,
        hash: row.get(at + 4)?,
        schema_version: row.get(at + 5)?,
        description: row.get(at + 6)?,
        platform_types: serde_json::from_str(&platforms)?,
        version_name: row.get(at + 8)?,
        display_name: row.get(at + 9)?,
        target_type: row.get(at + 10)?,
        created_at: row.get(at + 11)?,
    })
}

fn missing(name: &str) -> Error {
    CoreError::UnknownDocument {
        name: name.to_owned(),
    }
    .into()
}

fn get_document(c: &Connection, name: &str) -> Result<Option<Document>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE name = ?1"
    ))?;
    let mut rows = stmt.query(params![name])?;
    match rows.next()? {
        Some(row) => Ok(Some(document_from_row(row)?)),
        None => Ok(None),
    }
}

fn insert_version(
    tx: &Savepoint<'_>,
    name: &str,
    version: u32,
    v: &NewDocumentVersion,
) -> Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO document_versions ({VERSION_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        name,
        version,
        v.content,
        v.format.as_str(),
        v.hash,
        v.schema_version,
        v.description,
        serde_json::to_string(&v.platform_types)?,
        v.version_name,
        v.display_name,
        v.target_type,
        v.created_at,
    ])?;
    Ok(())
}

pub(crate) fn create(
    conn: &mut Connection,
    doc: &NewDocument,
    max_documents: usize,
) -> Result<Document> {
    let tx = conn.savepoint()?;
    let taken = get_document(&tx, &doc.name)?.is_some();
    let count: i64 = tx.query_row("SELECT COUNT(*) FROM documents", [], |r| r.get(0))?;
    check_new_document(
        &doc.name,
        taken,
        usize::try_from(count).unwrap_or(usize::MAX),
        max_documents,
    )?;
    tx.prepare_cached(
        "INSERT INTO documents (name, document_type, created_at, default_version, latest_version,
             last_assigned, tags_json)
         VALUES (?1, ?2, ?3, 1, 1, 1, ?4)",
    )?
    .execute(params![
        doc.name,
        doc.document_type,
        doc.first.created_at,
        serde_json::to_string(&doc.tags)?,
    ])?;
    insert_version(&tx, &doc.name, 1, &doc.first)?;
    let stored = get_document(&tx, &doc.name)?.ok_or_else(|| missing(&doc.name))?;
    tx.commit()?;
    Ok(stored)
}

pub(crate) fn add_version(
    conn: &mut Connection,
    name: &str,
    expected_latest: u32,
    v: &NewDocumentVersion,
    max_versions: u32,
) -> Result<Document> {
    let tx = conn.savepoint()?;
    let doc = get_document(&tx, name)?.ok_or_else(|| missing(name))?;
    let (latest_hash, versions, last): (String, u32, u32) = tx
        .prepare_cached(
            "SELECT v.hash, (SELECT COUNT(*) FROM document_versions WHERE name = ?1), d.last_assigned
             FROM documents d JOIN document_versions v ON v.name = d.name AND v.version = ?2
             WHERE d.name = ?1",
        )?
        .query_row(params![name, doc.latest_version], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let version_name_taken = match &v.version_name {
        Some(vn) => tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM document_versions WHERE name = ?1 AND version_name = ?2)",
            )?
            .query_row(params![name, vn], |r| r.get(0))?,
        None => false,
    };
    let current = LatestVersion {
        latest: doc.latest_version,
        hash: &latest_hash,
        versions,
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
    insert_version(&tx, name, version, v)?;
    tx.prepare_cached(
        "UPDATE documents SET latest_version = ?2, last_assigned = ?2 WHERE name = ?1",
    )?
    .execute(params![name, version])?;
    let stored = get_document(&tx, name)?.ok_or_else(|| missing(name))?;
    tx.commit()?;
    Ok(stored)
}

pub(crate) fn document(c: &Connection, name: &str) -> Result<Option<Document>> {
    get_document(c, name)
}

pub(crate) fn version(c: &Connection, name: &str, version: u32) -> Result<Option<DocumentVersion>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM document_versions WHERE name = ?1 AND version = ?2"
    ))?;
    let mut rows = stmt.query(params![name, version])?;
    match rows.next()? {
        Some(row) => Ok(Some(version_from_row(row, 0)?)),
        None => Ok(None),
    }
}

pub(crate) fn versions(c: &Connection, name: &str) -> Result<Vec<DocumentVersion>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM document_versions WHERE name = ?1 ORDER BY version"
    ))?;
    let mut rows = stmt.query(params![name])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(version_from_row(row, 0)?);
    }
    Ok(out)
}

pub(crate) fn set_default(conn: &mut Connection, name: &str, v: u32) -> Result<Document> {
    let tx = conn.savepoint()?;
    get_document(&tx, name)?.ok_or_else(|| missing(name))?;
    if version(&tx, name, v)?.is_none() {
        return Err(CoreError::UnknownDocumentVersion {
            name: name.to_owned(),
            version: v.to_string(),
        }
        .into());
    }
    tx.prepare_cached("UPDATE documents SET default_version = ?2 WHERE name = ?1")?
        .execute(params![name, v])?;
    let stored = get_document(&tx, name)?.ok_or_else(|| missing(name))?;
    tx.commit()?;
    Ok(stored)
}

pub(crate) fn delete(conn: &mut Connection, name: &str, v: Option<u32>) -> Result<()> {
    let tx = conn.savepoint()?;
    let doc = get_document(&tx, name)?.ok_or_else(|| missing(name))?;
    if let Some(v) = v {
        if version(&tx, name, v)?.is_none() {
            return Err(CoreError::UnknownDocumentVersion {
                name: name.to_owned(),
                version: v.to_string(),
            }
            .into());
        }
        let versions: u32 = tx
            .prepare_cached("SELECT COUNT(*) FROM document_versions WHERE name = ?1")?
            .query_row(params![name], |r| r.get(0))?;
        if !check_version_delete(name, v, doc.default_version, versions)? {
            tx.prepare_cached("DELETE FROM document_versions WHERE name = ?1 AND version = ?2")?
                .execute(params![name, v])?;
            tx.prepare_cached(
                "UPDATE documents SET latest_version =
                     (SELECT MAX(version) FROM document_versions WHERE name = ?1)
                 WHERE name = ?1",
            )?
            .execute(params![name])?;
            tx.commit()?;
            return Ok(());
        }
    }
    tx.prepare_cached("DELETE FROM document_versions WHERE name = ?1")?
        .execute(params![name])?;
    tx.prepare_cached("DELETE FROM documents WHERE name = ?1")?
        .execute(params![name])?;
    tx.commit()?;
    Ok(())
}

/// A document's columns, a flag for a missing default version, then that version's columns (in
/// the orders of [`DOCUMENT_COLUMNS`] and [`VERSION_COLUMNS`]): one statement, one snapshot.
const PAGE_SELECT: &str = "SELECT d.name, d.document_type, d.created_at, d.default_version, \
     d.latest_version, d.tags_json, v.version IS NULL, v.name, v.version, v.content, v.format, \
     v.hash, v.schema_version, v.description, v.platform_types, v.version_name, v.display_name, \
     v.target_type, v.created_at
     FROM documents d
     LEFT JOIN document_versions v ON v.name = d.name AND v.version = d.default_version";

/// The query of one page of documents by name, strictly after `after` (read through the primary
/// key; the default version is one primary-key lookup per document).
pub(crate) fn page_sql(after: Option<&str>, limit: usize) -> BuiltQuery {
    key_page_sql(PAGE_SELECT, "d.name", after, limit)
}

/// One page of documents, each with its default version.
pub(crate) fn page(c: &Connection, q: &BuiltQuery) -> Result<Vec<(Document, DocumentVersion)>> {
    query_built(c, q, |row| {
        let doc = document_from_row(row)?;
        if row.get::<_, bool>(6)? {
            return Err(Error::Corrupt(format!(
                "document {} lacks its default version",
                doc.name
            )));
        }
        Ok((doc, version_from_row(row, 7)?))
    })
}
