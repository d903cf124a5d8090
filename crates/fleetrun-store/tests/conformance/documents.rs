//! Checks for custom documents: create, versions, default version, deletion, listing, limits.

use super::support::T0;

use fleetrun_core::documents::{
    content_hash, Document, DocumentFormat, DocumentVersion, NewDocument, NewDocumentVersion,
};
use fleetrun_core::node::Tag;
use fleetrun_core::{CoreError, Store};

fn version(content: &str, version_name: Option<&str>, at: i64) -> NewDocumentVersion {
    NewDocumentVersion {
        content: content.into(),
        format: DocumentFormat::Yaml,
        hash: content_hash(content),
        schema_version: "2.2".into(),
        description: "d".into(),
        platform_types: vec!["Linux".into(), "MacOS".into()],
        version_name: version_name.map(String::from),
        display_name: "Display".into(),
        target_type: "/".into(),
        created_at: at,
    }
}

fn new_doc(name: &str, content: &str) -> NewDocument {
    NewDocument {
        name: name.into(),
        document_type: "Command".into(),
        tags: vec![Tag {
            key: "team".into(),
            value: "ops".into(),
        }],
        first: version(content, Some("v1"), T0),
    }
}

/// Create, read, version, set default, delete; every refusal the store owns.
pub async fn check_documents(store: &dyn Store) {
    let doc = store
        .create_document(new_doc("Deploy", "c1"), 500)
        .await
        .expect("create");
    assert_eq!((doc.default_version, doc.latest_version), (1, 1));
    assert_eq!(
        (doc.created_at, doc.document_type.as_str()),
        (T0, "Command")
    );
    assert_eq!(doc.tags.len(), 1);
    let dup = store.create_document(new_doc("Deploy", "c2"), 500).await;
    assert!(
        matches!(dup, Err(CoreError::DocumentAlreadyExists { .. })),
        "{dup:?}"
    );
    let v1 = store
        .document_version("Deploy", 1)
        .await
        .expect("read")
        .expect("v1");
    assert_eq!(v1.content, "c1");
    assert_eq!(v1.format, DocumentFormat::Yaml);
    assert_eq!(v1.hash, content_hash("c1"));
    assert_eq!(v1.version_name.as_deref(), Some("v1"));
    assert_eq!(v1.platform_types, ["Linux", "MacOS"]);
    assert_eq!(
        (v1.display_name.as_str(), v1.target_type.as_str()),
        ("Display", "/")
    );
    assert!(store.document("Nope").await.expect("read").is_none());
    assert!(store
        .document_version("Deploy", 2)
        .await
        .expect("read")
        .is_none());

    // Versions: only on top of the latest, never the same content, unique version names.
    let doc = store
        .add_document_version("Deploy", 1, version("c2", None, T0 + 1), 1000)
        .await
        .expect("v2");
    assert_eq!((doc.default_version, doc.latest_version), (1, 2));
    let stale = store
        .add_document_version("Deploy", 1, version("c3", None, T0 + 2), 1000)
        .await;
    assert!(
        matches!(
            stale,
            Err(CoreError::UnknownDocumentVersion { .. }
                | CoreError::NotLatestDocumentVersion { .. })
        ),
        "{stale:?}"
    );
    let same = store
        .add_document_version("Deploy", 2, version("c2", None, T0 + 2), 1000)
        .await;
    assert!(
        matches!(same, Err(CoreError::DuplicateDocumentContent { .. })),
        "{same:?}"
    );
    let named = store
        .add_document_version("Deploy", 2, version("c3", Some("v1"), T0 + 2), 1000)
        .await;
    assert!(
        matches!(named, Err(CoreError::DuplicateDocumentVersionName { .. })),
        "{named:?}"
    );
    let limit = store
        .add_document_version("Deploy", 2, version("c3", None, T0 + 2), 2)
        .await;
    assert!(
        matches!(limit, Err(CoreError::DocumentVersionLimitExceeded { .. })),
        "{limit:?}"
    );
    let missing = store
        .add_document_version("Nope", 1, version("c3", None, T0 + 2), 1000)
        .await;
    assert!(
        matches!(missing, Err(CoreError::UnknownDocument { .. })),
        "{missing:?}"
    );
    store
        .add_document_version("Deploy", 2, version("c3", None, T0 + 3), 1000)
        .await
        .expect("v3");
    let all = store.document_versions("Deploy").await.expect("versions");
    assert_eq!(all.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2, 3]);

    // Default version.
    let doc = store
        .set_default_document_version("Deploy", 2)
        .await
        .expect("default");
    assert_eq!((doc.default_version, doc.latest_version), (2, 3));
    let bad = store.set_default_document_version("Deploy", 9).await;
    assert!(
        matches!(
            bad,
            Err(CoreError::UnknownDocumentVersion { .. }
                | CoreError::NotLatestDocumentVersion { .. })
        ),
        "{bad:?}"
    );
    let bad = store.set_default_document_version("Nope", 1).await;
    assert!(
        matches!(bad, Err(CoreError::UnknownDocument { .. })),
        "{bad:?}"
    );

    // Listing shows each document's default version, by name.
    store
        .create_document(new_doc("Alpha", "a1"), 500)
        .await
        .expect("create");
    let listed = store.documents_page(None, 10).await.expect("list");
    let summary: Vec<_> = listed
        .iter()
        .map(|(d, v)| (d.name.as_str(), v.version, v.content.as_str()))
        .collect();
    assert_eq!(summary, [("Alpha", 1, "a1"), ("Deploy", 2, "c2")]);
    let full = store.create_document(new_doc("Third", "t"), 2).await;
    assert!(
        matches!(full, Err(CoreError::DocumentLimitExceeded { .. })),
        "{full:?}"
    );

    // Deleting: not the default while others exist; the latest moves down; numbers are not reused.
    let del = store.delete_document("Deploy", Some(2)).await;
    assert!(
        matches!(del, Err(CoreError::DefaultVersionInUse { .. })),
        "{del:?}"
    );
    store
        .delete_document("Deploy", Some(3))
        .await
        .expect("delete v3");
    let doc = store.document("Deploy").await.expect("read").expect("doc");
    assert_eq!((doc.default_version, doc.latest_version), (2, 2));
    let doc = store
        .add_document_version("Deploy", 2, version("c4", None, T0 + 4), 1000)
        .await
        .expect("v4");
    assert_eq!(doc.latest_version, 4);
    let gone = store.delete_document("Deploy", Some(3)).await;
    assert!(
        matches!(
            gone,
            Err(CoreError::UnknownDocumentVersion { .. }
                | CoreError::NotLatestDocumentVersion { .. })
        ),
        "{gone:?}"
    );
    store
        .delete_document("Deploy", None)
        .await
        .expect("delete all");
    assert!(store.document("Deploy").await.expect("read").is_none());
    assert!(store
        .document_versions("Deploy")
        .await
        .expect("versions")
        .is_empty());
    let gone = store.delete_document("Deploy", None).await;
    assert!(
        matches!(gone, Err(CoreError::UnknownDocument { .. })),
        "{gone:?}"
    );
    // Deleting the only version deletes the document; the name can be used again.
    store
        .delete_document("Alpha", Some(1))
        .await
        .expect("only version");
    assert!(store.document("Alpha").await.expect("read").is_none());
    store
        .create_document(new_doc("Alpha", "again"), 500)
        .await
        .expect("recreate");
}

/// Documents page by name in byte order (what ListDocuments merges the built-ins into), strictly
/// after the name given, at most `limit`, each at its default version; a walk page by page lists
/// every document exactly once.
pub async fn check_documents_paging(store: &dyn Store) {
    // Cases, punctuation and digits, so a collation that is not byte order shows.
    let names = [
        "beta", "Alpha", "alpha-2", "Alpha.1", "ZULU", "_under", "123-num", "Alpha_3", "a-b",
        "aB.c",
    ];
    for name in names {
        store
            .create_document(new_doc(name, &format!("{name} v1")), 500)
            .await
            .expect("create");
    }
    store
        .add_document_version("beta", 1, version("beta v2", None, T0 + 1), 1000)
        .await
        .expect("v2");
    store
        .set_default_document_version("beta", 2)
        .await
        .expect("default");
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    let page = |after: Option<String>, limit: usize| async move {
        store
            .documents_page(after.as_deref(), limit)
            .await
            .expect("page")
    };
    let names_of = |docs: &[(Document, DocumentVersion)]| -> Vec<String> {
        docs.iter().map(|(d, _)| d.name.clone()).collect()
    };
    let all = page(None, 100).await;
    assert_eq!(names_of(&all), want);
    for (doc, ver) in &all {
        assert_eq!(ver.name, doc.name);
        assert_eq!(ver.version, doc.default_version);
    }
    let beta = all
        .iter()
        .find(|(d, _)| d.name == "beta")
        .expect("beta listed");
    assert_eq!((beta.1.version, beta.1.content.as_str()), (2, "beta v2"));

    assert_eq!(names_of(&page(None, 3).await), want[..3]);
    assert_eq!(names_of(&page(Some(want[3].clone()), 4).await), want[4..8]);
    // A name that is no document's starts at the next one.
    assert_eq!(names_of(&page(Some("Alpha-".into()), 1).await), ["Alpha.1"]);
    assert!(page(Some(want[9].clone()), 5).await.is_empty());
    assert!(page(None, 0).await.is_empty());

    for limit in [1, 2, 3, 9, 10] {
        let mut walked = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let got = names_of(&page(after.clone(), limit).await);
            assert!(got.len() <= limit, "limit {limit}: {got:?}");
            let Some(last) = got.last().cloned() else {
                break;
            };
            walked.extend(got);
            after = Some(last);
        }
        assert_eq!(walked, want, "limit {limit}");
    }
}
