//! ListDocuments: the built-in documents plus every custom document (its default version), ordered by
//! name, filtered (`Filters` or the legacy `DocumentFilterList`, never both) and keyset-paged on the
//! name with an HMAC-signed token bound to the filters. Stored documents come from the store by
//! name in batches, strictly after the token's name, until a page plus one has matched.

use fleetrun_core::documents::{
    Document, DocumentFilter, DocumentVersion, ListedDocument, ACCOUNT_ID, AMAZON_OWNER,
    OWNER_VALUES,
};
use fleetrun_core::query::PageKey;
use fleetrun_wire::documents::{DocumentIdentifier, ListDocumentsRequest, ListDocumentsResult};
use fleetrun_wire::validate::Violations;

use super::documents::{builtin, wire_tags, Loaded};
use super::paging::Batches;
use super::validate::{finish, max_results};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

const DEFAULT_MAX_RESULTS: usize = 50;
const LEGACY_KEYS: [&str; 4] = ["Name", "Owner", "PlatformTypes", "DocumentType"];

/// The request's filters as (key, values), checked.
fn filters(req: &ListDocumentsRequest) -> ApiResult<Vec<(String, Vec<String>)>> {
    let mut v = Violations::new();
    let modern = req.filters.as_deref().unwrap_or_default();
    v.count("Filters", "[...]", modern.len(), 0, Some(6));
    let legacy = req.document_filter_list.as_deref();
    if let Some(l) = legacy {
        v.count("DocumentFilterList", "[]", l.len(), 1, None);
        for (i, f) in l.iter().enumerate() {
            let key = f.key.as_deref().unwrap_or("");
            v.one_of(
                &format!("DocumentFilterList.{}.member.key", i + 1),
                key,
                &LEGACY_KEYS,
            );
            v.length(
                &format!("DocumentFilterList.{}.member.value", i + 1),
                f.value.as_deref().unwrap_or(""),
                1,
                None,
            );
        }
    }
    for (i, f) in modern.iter().enumerate() {
        v.length(
            &format!("Filters.{}.member.Key", i + 1),
            f.key.as_deref().unwrap_or(""),
            1,
            Some(128),
        );
        for value in f.values.as_deref().unwrap_or_default() {
            v.length(
                &format!("Filters.{}.member.Values.member", i + 1),
                value,
                1,
                Some(256),
            );
        }
    }
    finish(v)?;
    if legacy.is_some() && !modern.is_empty() {
        return Err(ApiError::Validation(
            "DocumentFilterList and Filters cannot be used together; use Filters.".into(),
        ));
    }
    let pairs: Vec<(String, Vec<String>)> = match legacy {
        Some(l) => l
            .iter()
            .map(|f| {
                (
                    f.key.clone().unwrap_or_default(),
                    vec![f.value.clone().unwrap_or_default()],
                )
            })
            .collect(),
        None => modern
            .iter()
            .map(|f| {
                (
                    f.key.clone().unwrap_or_default(),
                    f.values.clone().unwrap_or_default(),
                )
            })
            .collect(),
    };
    for (key, values) in &pairs {
        if key == "Owner" {
            let ok = values.len() == 1 && OWNER_VALUES.contains(&values[0].as_str());
            if !ok {
                return Err(ApiError::Validation(format!(
                    "The Owner filter takes exactly one value of: {}.",
                    OWNER_VALUES.join(", ")
                )));
            }
        }
    }
    Ok(pairs)
}

/// A stored document as the listing sees it.
fn custom(doc: Document, ver: DocumentVersion) -> Loaded {
    // The listing needs no parsed steps; an empty spec keeps it cheap.
    let spec = fleetrun_core::document::DocumentSpec {
        name: doc.name.clone(),
        version: ver.version.to_string(),
        schema_version: ver.schema_version.clone(),
        description: ver.description.clone(),
        params: vec![],
        steps: vec![],
    };
    Loaded {
        doc,
        ver,
        own: true,
        spec,
    }
}

fn listed(l: &Loaded) -> ListedDocument {
    ListedDocument {
        name: l.doc.name.clone(),
        owner: if l.own { ACCOUNT_ID } else { AMAZON_OWNER }.into(),
        own: l.own,
        document_type: l.doc.document_type.clone(),
        schema_version: l.ver.schema_version.clone(),
        platform_types: l.ver.platform_types.clone(),
        target_type: l.ver.target_type.clone(),
        tags: l.doc.tags.clone(),
    }
}

fn identifier(l: &Loaded) -> DocumentIdentifier {
    DocumentIdentifier {
        name: l.doc.name.clone(),
        created_date: (l.ver.created_at > 0).then(|| fleetrun_wire::ssm::epoch(l.ver.created_at)),
        display_name: (!l.ver.display_name.is_empty()).then(|| l.ver.display_name.clone()),
        owner: if l.own { ACCOUNT_ID } else { AMAZON_OWNER }.into(),
        version_name: l.ver.version_name.clone(),
        platform_types: l.ver.platform_types.clone(),
        document_version: l.ver.version.to_string(),
        document_type: l.doc.document_type.clone(),
        schema_version: l.ver.schema_version.clone(),
        document_format: l.ver.format.as_str().into(),
        target_type: (!l.ver.target_type.is_empty()).then(|| l.ver.target_type.clone()),
        tags: wire_tags(&l.doc.tags),
    }
}

pub async fn list_documents(
    st: AppState,
    req: ListDocumentsRequest,
) -> ApiResult<ListDocumentsResult> {
    let mut v = Violations::new();
    let limit = max_results(&mut v, req.max_results, 1, 50, DEFAULT_MAX_RESULTS);
    finish(v)?;
    let pairs = filters(&req)?;
    let mut checks = Vec::with_capacity(pairs.len());
    for (key, values) in &pairs {
        checks.push(DocumentFilter::new(key, values.clone()).ok_or_else(|| {
            ApiError::InvalidFilterKey(format!("The filter key '{key}' is not valid."))
        })?);
    }
    let scope = format!("ListDocuments|{pairs:?}");
    let after = super::validate::page_start(&st, &scope, req.next_token.as_deref())?;
    let after_name = after.and_then(|k| k.instance_id);

    let keep = |l: &Loaded| {
        let item = listed(l);
        checks.iter().all(|f| f.matches(&item))
    };
    // The built-in joins the stored documents at its place in name order (before an equal name).
    let mut pending_builtin = Some(builtin()).filter(|b| {
        after_name
            .as_deref()
            .is_none_or(|n| b.doc.name.as_str() > n)
    });
    let store = &st.store;
    let mut stored = Batches::new(
        after_name,
        limit + 1,
        |(doc, _): &(Document, DocumentVersion)| doc.name.clone(),
        |after, n| async move { store.documents_page(after.as_deref(), n).await },
    );
    // One past the page, to know whether there is a next one.
    let mut page: Vec<Loaded> = Vec::with_capacity(limit + 2);
    while page.len() <= limit {
        let next = stored.next().await?.map(|(doc, ver)| custom(doc, ver));
        let due = |b: &mut Loaded| next.as_ref().is_none_or(|l| b.doc.name <= l.doc.name);
        if let Some(b) = pending_builtin.take_if(due) {
            if keep(&b) {
                page.push(b);
            }
        }
        let Some(l) = next else { break };
        if keep(&l) {
            page.push(l);
        }
    }
    let next_token = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|l| {
            st.tokens.encode(
                &scope,
                &PageKey {
                    requested_at: 0,
                    seq: 0,
                    instance_id: Some(l.doc.name.clone()),
                },
            )
        })
    } else {
        None
    };
    Ok(ListDocumentsResult {
        document_identifiers: page.iter().map(identifier).collect(),
        next_token,
    })
}
