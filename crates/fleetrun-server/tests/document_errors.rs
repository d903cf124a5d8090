//! Document operations without agents: ListDocuments (built-in, filters, paging) and every error
//! code, through the aws-sdk-ssm client.

mod common;

use aws_sdk_ssm::types::{
    DocumentFilter, DocumentFilterKey, DocumentFormat, DocumentKeyValuesFilter, DocumentType, Tag,
};
use common::{code, TestServer};

fn doc(word: &str) -> String {
    format!(
        r#"{{"schemaVersion": "2.2", "mainSteps": [{{"action": "aws:runShellScript", "name": "say", "inputs": {{"runCommand": ["echo {word}"]}}}}]}}"#
    )
}

fn kv(key: &str, values: &[&str]) -> DocumentKeyValuesFilter {
    DocumentKeyValuesFilter::builder()
        .key(key)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

async fn names(s: &TestServer, filters: Vec<DocumentKeyValuesFilter>) -> Vec<String> {
    s.client
        .list_documents()
        .set_filters(Some(filters))
        .send()
        .await
        .expect("list")
        .document_identifiers()
        .iter()
        .map(|d| d.name().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_documents_filters_and_pages() {
    let s = TestServer::start().await;
    for name in ["Web-Deploy", "Web-Restart", "Db-Backup"] {
        s.create_document(name, &doc(name)).await.expect("create");
    }
    s.client
        .create_document()
        .name("Tagged")
        .content(doc("tagged"))
        .tags(
            Tag::builder()
                .key("team")
                .value("ops")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("create tagged");

    let all = s.client.list_documents().send().await.expect("list");
    let builtin = all
        .document_identifiers()
        .iter()
        .find(|d| d.name() == Some("AWS-RunShellScript"))
        .expect("built-in listed");
    assert_eq!(builtin.owner(), Some("Amazon"));
    assert_eq!(builtin.schema_version(), Some("1.2"));
    assert_eq!(builtin.document_type().map(|t| t.as_str()), Some("Command"));
    let platforms: Vec<&str> = builtin
        .platform_types()
        .iter()
        .map(|p| p.as_str())
        .collect();
    assert_eq!(platforms, ["Linux", "MacOS"]);
    let mine = all
        .document_identifiers()
        .iter()
        .find(|d| d.name() == Some("Db-Backup"))
        .expect("mine");
    assert_eq!(
        (mine.owner(), mine.document_version()),
        (Some("000000000000"), Some("1"))
    );
    assert_eq!(mine.document_format().map(|f| f.as_str()), Some("JSON"));

    assert_eq!(
        names(&s, vec![kv("Owner", &["Self"])]).await,
        ["Db-Backup", "Tagged", "Web-Deploy", "Web-Restart"]
    );
    assert_eq!(
        names(&s, vec![kv("Owner", &["Amazon"])]).await,
        ["AWS-RunShellScript"]
    );
    assert_eq!(
        names(&s, vec![kv("Name", &["Web-"])]).await,
        ["Web-Deploy", "Web-Restart"]
    );
    assert_eq!(
        names(&s, vec![kv("Name", &["Web-"]), kv("Owner", &["Private"])])
            .await
            .len(),
        2
    );
    assert!(names(&s, vec![kv("PlatformTypes", &["Windows"])])
        .await
        .is_empty());
    assert_eq!(
        names(
            &s,
            vec![kv("PlatformTypes", &["Linux"]), kv("Name", &["Db"])]
        )
        .await,
        ["Db-Backup"]
    );
    assert_eq!(
        names(&s, vec![kv("DocumentType", &["Command"])])
            .await
            .len(),
        5
    );
    assert_eq!(names(&s, vec![kv("tag:team", &["ops"])]).await, ["Tagged"]);
    assert!(names(&s, vec![kv("Owner", &["ThirdParty"])])
        .await
        .is_empty());
    let legacy = s
        .client
        .list_documents()
        .document_filter_list(
            DocumentFilter::builder()
                .key(DocumentFilterKey::Name)
                .value("Web-R")
                .build()
                .expect("filter"),
        )
        .send()
        .await
        .expect("legacy");
    assert_eq!(legacy.document_identifiers().len(), 1);

    // Paging: one at a time, all five, in name order.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s
            .client
            .list_documents()
            .max_results(2)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("page");
        seen.extend(
            page.document_identifiers()
                .iter()
                .map(|d| d.name().unwrap_or_default().to_string()),
        );
        token = page.next_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "AWS-RunShellScript",
            "Db-Backup",
            "Tagged",
            "Web-Deploy",
            "Web-Restart"
        ]
    );

    let bad = s
        .client
        .list_documents()
        .next_token("garbage")
        .send()
        .await
        .expect_err("token");
    assert_eq!(code(&bad), "InvalidNextToken");
    let bad = s
        .client
        .list_documents()
        .filters(kv("Colour", &["x"]))
        .send()
        .await
        .expect_err("key");
    assert_eq!(code(&bad), "InvalidFilterKey");
    let bad = s
        .client
        .list_documents()
        .filters(kv("Owner", &["Self", "Amazon"]))
        .send()
        .await
        .expect_err("owner");
    assert_eq!(code(&bad), "ValidationException");
    let bad = s
        .client
        .list_documents()
        .max_results(51)
        .send()
        .await
        .expect_err("max");
    assert_eq!(code(&bad), "ValidationException");
}

/// Every page of ListDocuments with `filters` and `max`: the names of each.
async fn document_pages(
    s: &TestServer,
    filters: Vec<DocumentKeyValuesFilter>,
    max: i32,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s
            .client
            .list_documents()
            .set_filters(Some(filters.clone()))
            .max_results(max)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("page");
        pages.push(
            page.document_identifiers()
                .iter()
                .map(|d| d.name().unwrap_or_default().to_string())
                .collect(),
        );
        token = page.next_token().map(String::from);
        if token.is_none() {
            return pages;
        }
        assert!(pages.len() < 50, "no end to the pages: {pages:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_documents_pages_every_document_once_with_the_builtin_in_place() {
    let s = TestServer::start().await;
    // Names on both sides of AWS-RunShellScript, so the built-in lands inside a page.
    let mine = [
        "AAA-First",
        "AB-Second",
        "Backup",
        "Deploy-1",
        "Deploy-2",
        "Deploy-3",
        "Patch",
        "Restart",
        "Web-1",
        "Web-2",
        "Zeta",
        "alpha",
    ];
    for name in mine {
        s.create_document(name, &doc(name)).await.expect("create");
    }
    let mut all: Vec<String> = mine.iter().map(|n| n.to_string()).collect();
    all.push("AWS-RunShellScript".into());
    all.sort();
    assert_eq!(all[2], "AWS-RunShellScript");
    for max in [1, 2, 5, 12, 13, 50] {
        let pages = document_pages(&s, vec![], max).await;
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        let full = usize::try_from(max).expect("small");
        let (last, rest) = sizes.split_last().expect("a page");
        assert!(rest.iter().all(|n| *n == full), "max {max}: {sizes:?}");
        assert!(*last >= 1 && *last <= full, "max {max}: {sizes:?}");
        assert_eq!(pages.concat(), all, "max {max}");
    }
    // Filtered: the built-in is filtered out, the stored documents still page in order.
    let pages = document_pages(&s, vec![kv("Owner", &["Self"])], 5).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 2]);
    let mut own: Vec<String> = mine.iter().map(|n| n.to_string()).collect();
    own.sort();
    assert_eq!(pages.concat(), own);
    let pages = document_pages(&s, vec![kv("Name", &["Deploy-"])], 2).await;
    assert_eq!(pages, [vec!["Deploy-1", "Deploy-2"], vec!["Deploy-3"]]);
    let pages = document_pages(&s, vec![kv("Owner", &["Amazon"])], 1).await;
    assert_eq!(pages, [vec!["AWS-RunShellScript"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_document_error_code() {
    let s = TestServer::start().await;
    s.create_document("Mine", &doc("a")).await.expect("create");
    assert_eq!(
        s.create_document("Mine", &doc("b")).await,
        Err("DocumentAlreadyExists".into())
    );
    assert_eq!(
        s.create_document("Bad-Json", "{not json").await,
        Err("InvalidDocumentContent".into())
    );
    assert_eq!(
        s.create_document("Bad-Steps", r#"{"schemaVersion": "2.2", "mainSteps": []}"#)
            .await,
        Err("InvalidDocumentContent".into())
    );
    assert_eq!(
        s.create_document("Old-Schema", r#"{"schemaVersion": "2.0", "mainSteps": []}"#)
            .await,
        Err("InvalidDocumentSchemaVersion".into())
    );
    let big = format!(
        r#"{{"schemaVersion": "2.2", "description": "{}", "mainSteps": []}}"#,
        "x".repeat(70_000)
    );
    assert_eq!(
        s.create_document("Too-Big", &big).await,
        Err("MaxDocumentSizeExceeded".into())
    );
    for reserved in [
        "AWS-Mine",
        "aws-lower",
        "Amazon-X",
        "amznThing",
        "AWSSupport-Fix",
    ] {
        assert_eq!(
            s.create_document(reserved, &doc("a")).await,
            Err("ValidationException".into()),
            "{reserved}"
        );
    }
    assert_eq!(
        s.create_document("no spaces allowed", &doc("a")).await,
        Err("ValidationException".into())
    );
    let automation = s
        .client
        .create_document()
        .name("Runbook")
        .content(doc("a"))
        .document_type(DocumentType::Automation)
        .send()
        .await
        .expect_err("type");
    assert_eq!(code(&automation), "InvalidDocumentType");
    let text = s
        .client
        .create_document()
        .name("Text-Doc")
        .content("echo hi")
        .document_format(DocumentFormat::Text)
        .send()
        .await
        .expect_err("text");
    assert_eq!(code(&text), "InvalidDocumentContent");
    let yaml_as_json = s
        .client
        .create_document()
        .name("Yaml-Doc")
        .content("schemaVersion: '2.2'\nmainSteps: []\n")
        .send()
        .await
        .expect_err("yaml sent as JSON");
    assert_eq!(code(&yaml_as_json), "InvalidDocumentContent");

    let e = s
        .client
        .describe_document()
        .name("Missing")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(code(&e), "InvalidDocument");
    let e = s
        .client
        .get_document()
        .name("Mine")
        .document_version("4")
        .send()
        .await
        .expect_err("version");
    assert_eq!(code(&e), "InvalidDocumentVersion");
    let e = s
        .client
        .describe_document()
        .name("Mine")
        .version_name("nope")
        .send()
        .await
        .expect_err("version name");
    assert_eq!(code(&e), "InvalidDocumentVersion");
    let e = s
        .client
        .describe_document()
        .name("Mine")
        .document_version("latest")
        .send()
        .await
        .expect_err("pattern");
    assert_eq!(code(&e), "ValidationException");

    let update = |content: String, version_name: Option<&'static str>| {
        let s = &s;
        async move {
            s.client
                .update_document()
                .name("Mine")
                .content(content)
                .set_version_name(version_name.map(String::from))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| code(&e))
        }
    };
    assert_eq!(
        update(doc("a"), None).await,
        Err("DuplicateDocumentContent".into())
    );
    assert_eq!(update(doc("b"), Some("v2")).await, Ok(()));
    assert_eq!(
        update(doc("c"), Some("v2")).await,
        Err("DuplicateDocumentVersionName".into())
    );
    assert_eq!(
        update("[]".into(), None).await,
        Err("InvalidDocumentContent".into())
    );
    let e = s
        .client
        .update_document()
        .name("Missing")
        .content(doc("a"))
        .send()
        .await
        .expect_err("missing");
    assert_eq!(code(&e), "InvalidDocument");
    let e = s
        .client
        .update_document_default_version()
        .name("Mine")
        .document_version("9")
        .send()
        .await
        .expect_err("v9");
    assert_eq!(code(&e), "InvalidDocumentVersion");
    let e = s
        .client
        .update_document_default_version()
        .name("Missing")
        .document_version("1")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(code(&e), "InvalidDocument");

    // The built-in can be read, not changed.
    let d = s
        .client
        .describe_document()
        .name("AWS-RunShellScript")
        .send()
        .await
        .expect("describe built-in");
    let d = d.document().expect("document");
    assert_eq!(
        (d.owner(), d.schema_version(), d.document_version()),
        (Some("Amazon"), Some("1.2"), Some("1"))
    );
    let params: Vec<_> = d
        .parameters()
        .iter()
        .map(|p| (p.name().unwrap_or_default(), p.default_value()))
        .collect();
    assert!(
        params.contains(&("executionTimeout", Some("3600"))),
        "{params:?}"
    );
    assert!(params.contains(&("commands", None)), "{params:?}");
    let g = s
        .client
        .get_document()
        .name("AWS-RunShellScript")
        .send()
        .await
        .expect("get built-in");
    assert!(g.content().unwrap_or_default().contains("runtimeConfig"));
    let e = s
        .client
        .delete_document()
        .name("AWS-RunShellScript")
        .send()
        .await
        .expect_err("delete built-in");
    assert_eq!(code(&e), "InvalidDocumentOperation");
    let e = s
        .client
        .update_document()
        .name("AWS-RunShellScript")
        .content(doc("x"))
        .send()
        .await
        .expect_err("update built-in");
    assert_eq!(code(&e), "InvalidDocumentOperation");
    let e = s
        .client
        .delete_document()
        .name("Missing")
        .send()
        .await
        .expect_err("delete missing");
    assert_eq!(code(&e), "InvalidDocument");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_limit() {
    let s = TestServer::start().await;
    for i in 0..500 {
        s.create_document(&format!("Doc-{i:03}"), &doc("x"))
            .await
            .expect("create");
    }
    assert_eq!(
        s.create_document("One-Too-Many", &doc("x")).await,
        Err("DocumentLimitExceeded".into())
    );
    s.client
        .delete_document()
        .name("Doc-000")
        .send()
        .await
        .expect("delete");
    s.create_document("One-More", &doc("x"))
        .await
        .expect("room again");
}
