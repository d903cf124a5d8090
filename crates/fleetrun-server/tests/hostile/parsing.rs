//! Document content that is expensive to parse, sent while ListCommands is timed: the parses run
//! on blocking threads, two at a time, with flow nesting refused before libyaml sees it, so
//! ListCommands keeps answering.

use std::time::{Duration, Instant};

use aws_sdk_ssm::types::{DocumentFormat, DocumentType};

use super::common::{code, TestServer};

/// 64 KB of `{a: [` under mainSteps: quadratic in libyaml, refused by the pre-scan.
fn nested(bytes: usize) -> String {
    let head = "schemaVersion: '2.2'\ndescription: nested\nmainSteps: ";
    format!("{head}{}", "{a: [".repeat((bytes - head.len()) / 5))
}

/// As deep as the pre-scan allows (60 levels), repeated to 64 KB: the costliest content that
/// reaches libyaml. Not a valid Command document, so refused after the parse.
fn deep_but_allowed(bytes: usize) -> String {
    let one = format!("  - {}x{}\n", "{a: [".repeat(30), "]}".repeat(30));
    let head = "schemaVersion: '2.2'\ndescription: deep\nmainSteps:\n";
    format!("{head}{}", one.repeat((bytes - head.len()) / one.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_yaml_documents_do_not_stall_list_commands() {
    let server = TestServer::start().await;
    server
        .client
        .list_commands()
        .send()
        .await
        .expect("ListCommands");
    let mut creates = Vec::new();
    for (i, content) in (0..6)
        .map(|_| nested(64_000))
        .chain((0..6).map(|_| deep_but_allowed(64_000)))
        .enumerate()
    {
        let client = server.client.clone();
        creates.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client
                .create_document()
                .name(format!("Heavy{i}"))
                .content(content)
                .document_format(DocumentFormat::Yaml)
                .document_type(DocumentType::Command)
                .send()
                .await;
            (r.map(|_| ()).map_err(|e| code(&e)), t.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let started = Instant::now();
    while creates.iter().any(|c| !c.is_finished()) || latencies.len() < 5 {
        let t = Instant::now();
        server
            .client
            .list_commands()
            .send()
            .await
            .expect("ListCommands during the parses");
        latencies.push(t.elapsed());
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the parses finish"
        );
    }
    let mut parse_times = Vec::new();
    for c in creates {
        let (result, took) = c.await.expect("join");
        assert_eq!(result, Err("InvalidDocumentContent".to_string()));
        parse_times.push(took);
    }
    latencies.sort();
    let worst = *latencies.last().expect("samples");
    println!(
        "12 heavy CreateDocument calls: {:?} each; ListCommands during them: {} calls, p50 {:?}, max {worst:?}",
        parse_times,
        latencies.len(),
        latencies[latencies.len() / 2]
    );
    assert!(
        worst < Duration::from_secs(2),
        "ListCommands answered within 2 s ({worst:?})"
    );
    server.stop().await;
}
