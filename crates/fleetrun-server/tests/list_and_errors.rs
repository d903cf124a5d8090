//! ListCommands and DescribeInstanceInformation paging and filters, and every error code, through
//! the real SDK and raw HTTP.

mod common;

use std::collections::HashSet;

use aws_sdk_ssm::types::{
    CommandFilter, CommandFilterKey, InstanceInformationStringFilter, ResourceTypeForTagging, Tag,
};
use common::{code, Signing, TestServer};

fn filter(key: &str, value: &str) -> CommandFilter {
    CommandFilter::builder()
        .key(CommandFilterKey::from(key))
        .value(value)
        .build()
        .expect("filter")
}

fn node_filter(key: &str, values: &[&str]) -> InstanceInformationStringFilter {
    InstanceInformationStringFilter::builder()
        .key(key)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
        .expect("filter")
}

/// Every page of DescribeInstanceInformation with `filters`, MaxResults 5: the node ids of each.
async fn node_pages(
    s: &TestServer,
    filters: Vec<InstanceInformationStringFilter>,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s
            .client
            .describe_instance_information()
            .set_filters(Some(filters.clone()))
            .max_results(5)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("page");
        pages.push(
            page.instance_information_list()
                .iter()
                .map(|i| i.instance_id().unwrap_or_default().to_string())
                .collect(),
        );
        token = page.next_token().map(String::from);
        if token.is_none() {
            return pages;
        }
        assert!(pages.len() < 10, "no end to the pages: {pages:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_instance_information_pages_every_node_once() {
    let s = TestServer::start().await;
    let (mut all, mut linux, mut web) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..13 {
        let platform = if i % 3 == 0 { "Windows" } else { "Linux" };
        let id = s.register_node(platform).await;
        if platform == "Linux" {
            linux.push(id.clone());
        }
        if i % 2 == 0 {
            s.client
                .add_tags_to_resource()
                .resource_type(ResourceTypeForTagging::ManagedInstance)
                .resource_id(&id)
                .tags(
                    Tag::builder()
                        .key("role")
                        .value("web")
                        .build()
                        .expect("tag"),
                )
                .send()
                .await
                .expect("add tags");
            web.push(id.clone());
        }
        all.push(id);
    }
    for ids in [&mut all, &mut linux, &mut web] {
        ids.sort();
    }
    // Full pages until the last, every node once, in id order: no filter (13 = 5 + 5 + 3), a
    // filter checked per node (8 = 5 + 3), a tag filter (7 = 5 + 2).
    for (name, filters, want, sizes) in [
        ("none", vec![], &all, vec![5, 5, 3]),
        (
            "PlatformTypes",
            vec![node_filter("PlatformTypes", &["Linux"])],
            &linux,
            vec![5, 3],
        ),
        (
            "tag",
            vec![node_filter("tag:role", &["web"])],
            &web,
            vec![5, 2],
        ),
    ] {
        let pages = node_pages(&s, filters).await;
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            sizes,
            "{name}: {pages:?}"
        );
        assert_eq!(pages.concat(), *want, "{name}");
    }
    // A token carries its filters: it cannot resume a listing under others.
    let first = s
        .client
        .describe_instance_information()
        .max_results(5)
        .send()
        .await
        .expect("page");
    let e = s
        .client
        .describe_instance_information()
        .filters(node_filter("PlatformTypes", &["Linux"]))
        .max_results(5)
        .set_next_token(first.next_token().map(String::from))
        .send()
        .await
        .expect_err("token under other filters");
    assert_eq!(code(&e), "InvalidNextToken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_has_no_gap_or_duplicate_while_commands_arrive() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let node = a.instance_id.clone();
    a.stop().await; // commands stay Pending: we only page here
    let mut sent = Vec::new();
    for _ in 0..30 {
        sent.push(s.run(&[&node], &["true"]).await);
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s
            .client
            .list_commands()
            .max_results(7)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("page");
        assert!(page.commands().len() <= 7);
        seen.extend(
            page.commands()
                .iter()
                .filter_map(|c| c.command_id())
                .map(str::to_string),
        );
        // New commands arrive between pages; they are newer than every page already walked.
        s.run(&[&node], &["true"]).await;
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates");
    for id in &sent {
        assert!(unique.contains(id), "missing {id}");
    }
    // Newest first: the walk returns the original 30 in reverse order of sending.
    let original: Vec<&String> = seen.iter().filter(|id| sent.contains(id)).collect();
    let mut expected: Vec<&String> = sent.iter().collect();
    expected.reverse();
    assert_eq!(original, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_what_they_name() {
    let s = TestServer::start().await;
    let live = s.add_agent().await;
    // A node without an agent (a stopped agent's goodbye would make its work Delayed at once):
    // work sent to it stays Pending.
    let idle_node = s.register_node("Linux").await;
    let before = std::time::SystemTime::now();
    let ok = s.run(&[&live.instance_id], &["true"]).await;
    let bad = s.run(&[&live.instance_id], &["exit 1"]).await;
    s.wait(&ok, &live.instance_id).await;
    s.wait(&bad, &live.instance_id).await;
    let pending = s.run(&[&idle_node], &["true"]).await;

    let ids = |out: &aws_sdk_ssm::operation::list_commands::ListCommandsOutput| -> Vec<String> {
        out.commands()
            .iter()
            .filter_map(|c| c.command_id())
            .map(str::to_string)
            .collect()
    };
    let q = |filters: Vec<CommandFilter>| {
        let c = s.client.clone();
        async move {
            c.list_commands()
                .set_filters(Some(filters))
                .send()
                .await
                .expect("list")
        }
    };
    assert_eq!(
        ids(&q(vec![filter("Status", "Success")]).await),
        vec![ok.clone()]
    );
    assert_eq!(
        ids(&q(vec![filter("Status", "Failed")]).await),
        vec![bad.clone()]
    );
    assert_eq!(
        ids(&q(vec![filter("Status", "Pending")]).await),
        vec![pending.clone()]
    );
    assert_eq!(
        ids(&q(vec![filter("ExecutionStage", "Executing")]).await),
        vec![pending.clone()]
    );
    assert_eq!(
        ids(&q(vec![filter("ExecutionStage", "Complete")]).await),
        vec![bad.clone(), ok.clone()]
    );
    assert_eq!(
        ids(&q(vec![filter("DocumentName", "AWS-RunShellScript")]).await).len(),
        3
    );
    assert!(ids(&q(vec![filter("DocumentName", "Other-Doc")]).await).is_empty());
    let since: time_fmt::Iso = before.into();
    assert_eq!(
        ids(&q(vec![filter("InvokedAfter", &since.0)]).await).len(),
        3
    );
    assert!(ids(&q(vec![filter("InvokedBefore", &since.0)]).await).is_empty());
    // ANDed.
    assert_eq!(
        ids(&q(vec![
            filter("Status", "Success"),
            filter("ExecutionStage", "Complete")
        ])
        .await),
        vec![ok.clone()]
    );
    assert!(ids(&q(vec![
        filter("Status", "Success"),
        filter("Status", "Failed")
    ])
    .await)
    .is_empty());
    // InstanceId and CommandId.
    let by_node = s
        .client
        .list_commands()
        .instance_id(&idle_node)
        .send()
        .await
        .expect("list");
    assert_eq!(ids(&by_node), vec![pending.clone()]);
    let by_id = s
        .client
        .list_commands()
        .command_id(&bad)
        .send()
        .await
        .expect("list");
    assert_eq!(ids(&by_id), vec![bad.clone()]);
    // Invocation filters.
    let inv = s
        .client
        .list_command_invocations()
        .filters(filter("Status", "Failed"))
        .send()
        .await
        .expect("invocations");
    assert_eq!(inv.command_invocations().len(), 1);
    assert_eq!(
        inv.command_invocations()[0].command_id(),
        Some(bad.as_str())
    );
    live.stop().await;
}

mod time_fmt {
    pub struct Iso(pub String);
    impl From<std::time::SystemTime> for Iso {
        fn from(t: std::time::SystemTime) -> Self {
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            Iso(fleetrun_core::clock::iso8601(ms))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_codes_match_aws() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let node = a.instance_id.clone();
    let c = &s.client;
    let send = || {
        c.send_command()
            .document_name("AWS-RunShellScript")
            .parameters("commands", vec!["true".into()])
    };

    let e = send()
        .instance_ids("mi-0123456789abcdef0")
        .send()
        .await
        .expect_err("unknown node");
    assert_eq!(code(&e), "InvalidInstanceId");
    let e = send()
        .instance_ids("bad")
        .send()
        .await
        .expect_err("malformed node");
    assert_eq!(code(&e), "InvalidInstanceId");
    let e = send()
        .instance_ids(&node)
        .instance_ids(&node)
        .send()
        .await
        .expect_err("duplicate");
    assert_eq!(code(&e), "DuplicateInstanceId");
    let e = send().send().await.expect_err("no targets");
    assert_eq!(code(&e), "ValidationException");
    let e = send()
        .instance_ids(&node)
        .timeout_seconds(10)
        .send()
        .await
        .expect_err("timeout");
    assert_eq!(code(&e), "ValidationException");
    let e = send()
        .instance_ids(&node)
        .comment("c".repeat(101))
        .send()
        .await
        .expect_err("comment");
    assert_eq!(code(&e), "ValidationException");
    let e = send()
        .instance_ids(&node)
        .max_concurrency("0")
        .send()
        .await
        .expect_err("concurrency");
    assert_eq!(code(&e), "ValidationException");
    let e = c
        .send_command()
        .document_name("No-Such-Document")
        .instance_ids(&node)
        .send()
        .await
        .expect_err("doc");
    assert_eq!(code(&e), "InvalidDocument");
    let e = send()
        .instance_ids(&node)
        .document_version("7")
        .send()
        .await
        .expect_err("version");
    assert_eq!(code(&e), "InvalidDocumentVersion");
    let e = c
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&node)
        .send()
        .await
        .expect_err("no commands");
    assert_eq!(code(&e), "InvalidParameters");

    let e = c
        .list_commands()
        .max_results(51)
        .send()
        .await
        .expect_err("max results");
    assert_eq!(code(&e), "ValidationException");
    let e = c
        .list_commands()
        .command_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .expect_err("unknown command");
    assert_eq!(code(&e), "InvalidCommandId");
    let e = c
        .list_commands()
        .instance_id("i-bad")
        .send()
        .await
        .expect_err("bad instance");
    assert_eq!(code(&e), "InvalidInstanceId");
    let e = c
        .list_commands()
        .next_token("garbage")
        .send()
        .await
        .expect_err("token");
    assert_eq!(code(&e), "InvalidNextToken");
    let e = c
        .list_commands()
        .filters(filter("Foo", "x"))
        .send()
        .await
        .expect_err("key");
    assert_eq!(code(&e), "InvalidFilterKey");
    let e = c
        .list_command_invocations()
        .filters(filter("ExecutionStage", "Complete"))
        .send()
        .await
        .expect_err("stage on invocations");
    assert_eq!(code(&e), "InvalidFilterKey");
    let e = c
        .list_commands()
        .filters(filter("Status", "Nope"))
        .send()
        .await
        .expect_err("value");
    assert_eq!(code(&e), "InvalidFilterValue");
    let e = c
        .list_commands()
        .instance_id(&node)
        .filters(filter("Status", "Pending"))
        .send()
        .await
        .expect_err("pending + instance");
    assert_eq!(code(&e), "ValidationException");

    // A token only continues its own query.
    for _ in 0..3 {
        s.run(&[&node], &["true"]).await;
    }
    let page = c.list_commands().max_results(1).send().await.expect("page");
    let token = page.next_token().expect("token").to_string();
    let e = c
        .list_commands()
        .max_results(1)
        .filters(filter("Status", "Success"))
        .next_token(&token)
        .send()
        .await
        .expect_err("foreign token");
    assert_eq!(code(&e), "InvalidNextToken");

    let e = c
        .get_command_invocation()
        .command_id("00000000-0000-0000-0000-000000000000")
        .instance_id(&node)
        .send()
        .await
        .expect_err("missing invocation");
    assert_eq!(code(&e), "InvocationDoesNotExist");
    let id = s.run(&[&node], &["true"]).await;
    let e = c
        .get_command_invocation()
        .command_id(&id)
        .instance_id(&node)
        .plugin_name("aws:nope")
        .send()
        .await
        .expect_err("plugin");
    assert_eq!(code(&e), "InvalidPluginName");
    let e = c
        .cancel_command()
        .command_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .expect_err("cancel unknown");
    assert_eq!(code(&e), "InvalidCommandId");
    let e = c
        .delete_activation()
        .activation_id("nope")
        .send()
        .await
        .expect_err("activation");
    assert_eq!(code(&e), "InvalidActivationId");
    let e = c
        .describe_instance_information()
        .max_results(4)
        .send()
        .await
        .expect_err("min results");
    assert_eq!(code(&e), "ValidationException");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_edge_errors_are_aws_json() {
    let s = TestServer::start().await;
    let signing = Signing::admin(&s);
    let post =
        |target: Option<&'static str>, body: &'static str| s.signed_post(target, body, &signing);
    for (target, body, want) in [
        (
            Some("AmazonSSM.ListCommands"),
            "{not json",
            "SerializationException",
        ),
        (
            Some("AmazonSSM.ListCommands"),
            "{\"MaxResults\":\"ten\"}",
            "SerializationException",
        ),
        (
            Some("AmazonSSM.DescribeParameters"),
            "{}",
            "UnknownOperationException",
        ),
        (None, "{}", "UnknownOperationException"),
    ] {
        let resp = post(target, body).await;
        assert_eq!(resp.status().as_u16(), 400, "{target:?} {body}");
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/x-amz-json-1.1")
        );
        assert!(resp.headers().contains_key("x-amzn-requestid"));
        let v: serde_json::Value = resp.json().await.expect("json body");
        assert_eq!(v["__type"], want, "{target:?} {body}");
        assert!(v["Message"].is_string());
    }
    // An empty body is an empty request, as botocore sends `{}`.
    let resp = post(Some("AmazonSSM.ListCommands"), "").await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_limits_are_enforced() {
    let s = TestServer::start().await;
    let act = s
        .client
        .create_activation()
        .iam_role("role")
        .registration_limit(1)
        .default_instance_name("web")
        .send()
        .await
        .expect("activation");
    let (id, code_) = (
        act.activation_id().expect("id"),
        act.activation_code().expect("code"),
    );
    assert_eq!(code_.len(), 20);
    use common::node::{poll_body, register_raw, registration, FakeNode};
    use fleetrun_agent::signing::{unix_now, NodeKey};
    let key = NodeKey::generate();
    let register = |code: &str| {
        let body = registration(id, code, &key, "Linux");
        let endpoint = s.endpoint.clone();
        async move { register_raw(&endpoint, &body).await }
    };
    let (status, _) = register("wrong-code-wrong-code").await;
    assert_eq!(status, 400);
    let n = FakeNode::register(&s.endpoint, (id, code_), "Linux").await;
    let node = n.instance_id.clone();
    assert!(node.starts_with("mi-") && node.len() == 20, "{node}");
    // Node calls need the node's own signature (tests/node_auth.rs has the refusals); a bad body
    // with good credentials is a client error.
    let creds = n.credentials().await;
    let (status, v) = n
        .send(&n.unsigned(fleetrun_wire::agent::POLL_PATH, poll_body("s")))
        .await;
    assert_eq!(
        (status, &v["__type"]),
        (
            400,
            &serde_json::json!("MissingAuthenticationTokenException")
        )
    );
    let broken = n.session_request(
        fleetrun_wire::agent::POLL_PATH,
        b"{broken".to_vec(),
        &creds,
        unix_now(),
    );
    let (status, v) = n.send(&broken).await;
    assert_eq!(
        (status, &v["__type"]),
        (400, &serde_json::json!("SerializationException"))
    );
    assert_eq!(n.poll(&creds).await.0, 200);
    let (status, v) = register(code_).await;
    assert_eq!(status, 400);
    assert_eq!(v["__type"], "InvalidActivation");

    let list = s
        .client
        .describe_activations()
        .send()
        .await
        .expect("describe");
    let a = &list.activation_list()[0];
    assert_eq!(a.registrations_count(), Some(1));
    assert_eq!(a.default_instance_name(), Some("web"));
    assert!(!a.expired());
    s.client
        .delete_activation()
        .activation_id(id)
        .send()
        .await
        .expect("delete");
    let e = s
        .client
        .delete_activation()
        .activation_id(id)
        .send()
        .await
        .expect_err("gone");
    assert_eq!(code(&e), "InvalidActivationId");
    let info = s
        .client
        .describe_instance_information()
        .send()
        .await
        .expect("nodes");
    assert_eq!(
        info.instance_information_list()[0].instance_id(),
        Some(node.as_str())
    );
    assert_eq!(info.instance_information_list()[0].name(), Some("web"));
}
