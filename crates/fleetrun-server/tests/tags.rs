//! Tags and tag targets end to end: the real aws-sdk-ssm client tags real agents, sends commands with
//! `tag:<key>` / `tag-key` targets (values ORed, targets ANDed) and watches the scripts run on exactly
//! the resolved nodes; NoInstancesInTag; DescribeInstanceInformation tag filters; every error code.

mod common;

use aws_sdk_ssm::types::{
    CommandFilter, InstanceInformationStringFilter, ResourceTypeForTagging, Tag, Target,
};
use common::{code, TestAgent, TestServer};

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build().expect("tag")
}

fn target(key: &str, values: &[&str]) -> Target {
    Target::builder()
        .key(key)
        .set_values(Some(values.iter().map(|s| s.to_string()).collect()))
        .build()
}

async fn add_tags(s: &TestServer, node: &str, tags: &[(&str, &str)]) {
    s.client
        .add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(node)
        .set_tags(Some(tags.iter().map(|(k, v)| tag(k, v)).collect()))
        .send()
        .await
        .expect("add tags");
}

async fn list_tags(s: &TestServer, node: &str) -> Vec<(String, String)> {
    s.client
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(node)
        .send()
        .await
        .expect("list tags")
        .tag_list()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// Four tagged agents: web+team=a, db+team=b, web, cache+owner=x.
async fn fleet(s: &TestServer) -> Vec<TestAgent> {
    let mut agents = Vec::new();
    for _ in 0..4 {
        agents.push(s.add_agent().await);
    }
    let tags: [&[(&str, &str)]; 4] = [
        &[("role", "web"), ("team", "a")],
        &[("role", "db"), ("team", "b")],
        &[("role", "web")],
        &[("role", "cache"), ("owner", "x")],
    ];
    for (a, t) in agents.iter().zip(tags) {
        add_tags(s, &a.instance_id, t).await;
    }
    agents
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn ids_of(agents: &[TestAgent], which: &[usize]) -> Vec<String> {
    sorted(
        which
            .iter()
            .map(|i| agents[*i].instance_id.clone())
            .collect(),
    )
}

/// Sends `echo $AWS_SSM_INSTANCE_ID` (plus `extra`) to `targets`; returns the command.
async fn send(
    s: &TestServer,
    targets: Vec<Target>,
    max_errors: Option<&str>,
    extra: &str,
) -> aws_sdk_ssm::types::Command {
    s.client
        .send_command()
        .document_name("AWS-RunShellScript")
        .set_targets(Some(targets))
        .set_max_errors(max_errors.map(str::to_string))
        .parameters(
            "commands",
            vec!["echo $AWS_SSM_INSTANCE_ID".to_string(), extra.to_string()],
        )
        .send()
        .await
        .expect("send")
        .command()
        .cloned()
        .expect("command")
}

/// Waits for every invocation and returns the nodes that ran (checked through their stdout).
async fn ran_on(s: &TestServer, c: &aws_sdk_ssm::types::Command) -> Vec<String> {
    let id = c.command_id().expect("id");
    let invs = s
        .client
        .list_command_invocations()
        .command_id(id)
        .send()
        .await
        .expect("invocations");
    let mut nodes = Vec::new();
    for inv in invs.command_invocations() {
        let node = inv.instance_id().expect("node").to_string();
        let out = s.wait(id, &node).await;
        let stdout = out.standard_output_content().unwrap_or_default();
        assert!(stdout.starts_with(&node), "{stdout:?} from {node}: {out:?}");
        nodes.push(node);
    }
    sorted(nodes)
}

async fn command_row(s: &TestServer, id: &str) -> aws_sdk_ssm::types::Command {
    s.client
        .list_commands()
        .command_id(id)
        .send()
        .await
        .expect("list")
        .commands()[0]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_targets_run_on_exactly_the_matching_nodes() {
    let s = TestServer::start().await;
    let agents = fleet(&s).await;

    // tag:role with two values (ORed).
    let c = send(&s, vec![target("tag:role", &["web", "db"])], None, "true").await;
    assert_eq!(c.target_count(), 3);
    assert!(c.instance_ids().is_empty());
    assert_eq!(c.targets().len(), 1);
    assert_eq!(c.targets()[0].key(), Some("tag:role"));
    assert_eq!(c.targets()[0].values(), ["web", "db"]);
    assert_eq!(ran_on(&s, &c).await, ids_of(&agents, &[0, 1, 2]));

    // tag-key: nodes having any of the keys.
    let c = send(
        &s,
        vec![target("tag-key", &["team", "owner"])],
        None,
        "true",
    )
    .await;
    assert_eq!(ran_on(&s, &c).await, ids_of(&agents, &[0, 1, 3]));

    // Two targets ANDed; InstanceIds in any case ANDed with a tag.
    let c = send(
        &s,
        vec![target("tag:role", &["web"]), target("tag-key", &["team"])],
        None,
        "true",
    )
    .await;
    assert_eq!(c.target_count(), 1);
    assert_eq!(ran_on(&s, &c).await, ids_of(&agents, &[0]));
    let c = send(
        &s,
        vec![
            target(
                "instanceids",
                &[&agents[2].instance_id, &agents[3].instance_id],
            ),
            target("tag:role", &["web", "cache"]),
            target("tag:owner", &["x"]),
        ],
        None,
        "true",
    )
    .await;
    assert_eq!(ran_on(&s, &c).await, ids_of(&agents, &[3]));
    let row = command_row(&s, c.command_id().expect("id")).await;
    assert_eq!(row.targets().len(), 3, "echoed as sent");
    assert_eq!(row.targets()[0].key(), Some("instanceids"));

    // Tags changed after a send do not matter to that command, only to later ones.
    s.client
        .remove_tags_from_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(&agents[0].instance_id)
        .tag_keys("role")
        .send()
        .await
        .expect("remove");
    let c = send(&s, vec![target("tag:role", &["web"])], None, "true").await;
    assert_eq!(ran_on(&s, &c).await, ids_of(&agents, &[2]));

    for a in agents {
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_errors_percent_uses_the_resolved_count() {
    let s = TestServer::start().await;
    let agents = fleet(&s).await;
    // role=web|db resolves to 3 nodes; nodes 0 and 1 fail. The ramp releases one node, then two:
    // a failure waits a second, so the last node is delivered before the error that would
    // terminate it is reported (MaxErrors terminates only what was not delivered yet).
    let fail = format!(
        "case $AWS_SSM_INSTANCE_ID in {}|{}) sleep 1; exit 1;; esac",
        agents[0].instance_id, agents[1].instance_id
    );
    // 50% of 3 = 1 tolerated error: 2 errors → Failed.
    let c = send(
        &s,
        vec![target("tag:role", &["web", "db"])],
        Some("50%"),
        &fail,
    )
    .await;
    ran_on(&s, &c).await;
    let row = command_row(&s, c.command_id().expect("id")).await;
    assert_eq!(
        (row.status_details(), row.target_count(), row.error_count()),
        (Some("Failed"), 3, 2)
    );
    // 67% of 3 = 2 tolerated errors: 2 errors → Incomplete.
    let c = send(
        &s,
        vec![target("tag:role", &["web", "db"])],
        Some("67%"),
        &fail,
    )
    .await;
    ran_on(&s, &c).await;
    let row = command_row(&s, c.command_id().expect("id")).await;
    assert_eq!(
        (row.status_details(), row.error_count()),
        (Some("Incomplete"), 2)
    );
    for a in agents {
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_matching_node_is_no_instances_in_tag() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    add_tags(&s, &a.instance_id, &[("role", "web")]).await;
    let c = send(&s, vec![target("tag:role", &["nope"])], None, "true").await;
    assert_eq!(c.status().map(|s| s.as_str()), Some("Success"));
    assert_eq!(c.status_details(), Some("NoInstancesInTag"));
    assert_eq!(
        (c.target_count(), c.completed_count(), c.error_count()),
        (0, 0, 0)
    );
    let id = c.command_id().expect("id").to_string();
    for status in ["NoInstancesInTag", "Success"] {
        let out = s
            .client
            .list_commands()
            .filters(
                CommandFilter::builder()
                    .key("Status".into())
                    .value(status)
                    .build()
                    .expect("filter"),
            )
            .send()
            .await
            .expect("list");
        let ids: Vec<_> = out
            .commands()
            .iter()
            .filter_map(|c| c.command_id())
            .collect();
        assert_eq!(ids, [id.as_str()], "{status}");
    }
    let invs = s
        .client
        .list_command_invocations()
        .command_id(&id)
        .send()
        .await
        .expect("invocations");
    assert!(invs.command_invocations().is_empty());
    // AND of two targets that each match, but not the same node.
    let b = s.add_agent().await;
    add_tags(&s, &b.instance_id, &[("team", "a")]).await;
    let c = send(
        &s,
        vec![target("tag:role", &["web"]), target("tag:team", &["a"])],
        None,
        "true",
    )
    .await;
    assert_eq!(c.status_details(), Some("NoInstancesInTag"));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagging_operations_and_their_errors() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let node = a.instance_id.clone();
    assert!(list_tags(&s, &node).await.is_empty());
    add_tags(&s, &node, &[("role", "web"), ("env", "prod"), ("note", "")]).await;
    add_tags(&s, &node, &[("role", "db")]).await; // overwrites
    assert_eq!(
        list_tags(&s, &node).await,
        vec![
            ("env".to_string(), "prod".to_string()),
            ("note".to_string(), String::new()),
            ("role".to_string(), "db".to_string()),
        ]
    );
    s.client
        .remove_tags_from_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(&node)
        .tag_keys("note")
        .tag_keys("absent")
        .send()
        .await
        .expect("remove");
    assert_eq!(list_tags(&s, &node).await.len(), 2);

    let add = |rt: ResourceTypeForTagging, id: &str, tags: Vec<Tag>| {
        s.client
            .add_tags_to_resource()
            .resource_type(rt)
            .resource_id(id)
            .set_tags(Some(tags))
            .send()
    };
    let mi = ResourceTypeForTagging::ManagedInstance;
    let e = add(mi.clone(), "mi-0123456789abcdef0", vec![tag("a", "b")])
        .await
        .expect_err("unknown node");
    assert_eq!(code(&e), "InvalidResourceId");
    let e = add(mi.clone(), "web-1", vec![tag("a", "b")])
        .await
        .expect_err("malformed");
    assert_eq!(code(&e), "InvalidResourceId");
    let e = s
        .client
        .list_tags_for_resource()
        .resource_type(mi.clone())
        .resource_id("i-0123456789abcdef0")
        .send()
        .await
        .expect_err("ec2 id");
    assert_eq!(code(&e), "InvalidResourceId");
    for rt in [
        ResourceTypeForTagging::Document,
        ResourceTypeForTagging::Parameter,
    ] {
        let e = add(rt, &node, vec![tag("a", "b")]).await.expect_err("type");
        assert_eq!(code(&e), "InvalidResourceType");
    }
    let e = add(
        ResourceTypeForTagging::from("Nope"),
        &node,
        vec![tag("a", "b")],
    )
    .await
    .expect_err("enum");
    assert_eq!(code(&e), "ValidationException");
    let e = add(mi.clone(), &node, vec![tag(&"k".repeat(129), "v")])
        .await
        .expect_err("long key");
    assert_eq!(code(&e), "ValidationException");
    assert!(
        e.as_service_error()
            .and_then(|e| aws_sdk_ssm::error::ProvideErrorMetadata::message(e))
            .unwrap_or_default()
            .contains("at 'tags.1.member.key' failed to satisfy constraint: Member must have length less than or equal to 128"),
        "{e:?}"
    );
    let e = add(mi.clone(), &node, vec![tag("ok", &"v".repeat(257))])
        .await
        .expect_err("long value");
    assert_eq!(code(&e), "ValidationException");
    let e = add(mi.clone(), &node, vec![tag("a*b", "v")])
        .await
        .expect_err("pattern");
    assert_eq!(code(&e), "ValidationException");
    let e = add(mi.clone(), &node, vec![tag("aws:owner", "v")])
        .await
        .expect_err("reserved");
    assert_eq!(code(&e), "ValidationException");
    let many: Vec<Tag> = (0..1001).map(|i| tag(&format!("k{i}"), "v")).collect();
    let e = add(mi.clone(), &node, many).await.expect_err("1001");
    assert_eq!(code(&e), "ValidationException");

    // 50 tags per node: the node has 2; 48 more fit, the 51st does not.
    let fill: Vec<Tag> = (0..48).map(|i| tag(&format!("k{i:02}"), "v")).collect();
    add(mi.clone(), &node, fill).await.expect("fill to 50");
    let e = add(mi.clone(), &node, vec![tag("one-more", "v")])
        .await
        .expect_err("51");
    assert_eq!(code(&e), "TooManyTagsError");
    assert_eq!(list_tags(&s, &node).await.len(), 50);
    add(mi.clone(), &node, vec![tag("role", "web")])
        .await
        .expect("overwrite at 50");

    let e = s
        .client
        .remove_tags_from_resource()
        .resource_type(mi.clone())
        .resource_id("mi-0123456789abcdef0")
        .tag_keys("a")
        .send()
        .await
        .expect_err("unknown node");
    assert_eq!(code(&e), "InvalidResourceId");
    let e = s
        .client
        .remove_tags_from_resource()
        .resource_type(mi)
        .resource_id(&node)
        .tag_keys("")
        .send()
        .await
        .expect_err("empty key");
    assert_eq!(code(&e), "ValidationException");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_errors() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let send = |targets: Vec<Target>| {
        s.client
            .send_command()
            .document_name("AWS-RunShellScript")
            .set_targets(Some(targets))
            .parameters("commands", vec!["true".to_string()])
            .send()
    };
    let cases: Vec<(Vec<Target>, &str)> = vec![
        (
            vec![target("resource-groups:Name", &["g"])],
            "InvalidTarget",
        ),
        (
            vec![target(
                "resource-groups:ResourceTypeFilters",
                &["AWS::EC2::Instance"],
            )],
            "InvalidTarget",
        ),
        (
            vec![target("Environment", &["prod"])],
            "ValidationException",
        ),
        (vec![target("tag:", &["x"])], "ValidationException"),
        (vec![target("tag:a*b", &["x"])], "ValidationException"),
        (vec![target("tag:role", &[])], "ValidationException"),
        (
            (0..6)
                .map(|i| target(&format!("tag:k{i}"), &["v"]))
                .collect(),
            "ValidationException",
        ),
        (
            vec![Target::builder()
                .key("tag:role")
                .set_values(Some((0..51).map(|i| format!("v{i}")).collect()))
                .build()],
            "ValidationException",
        ),
        (
            vec![target("InstanceIds", &["mi-0123456789abcdef0"])],
            "InvalidInstanceId",
        ),
        (
            vec![target("InstanceIds", &[&a.instance_id, &a.instance_id])],
            "DuplicateInstanceId",
        ),
    ];
    for (targets, want) in cases {
        let shown = format!("{targets:?}");
        let e = send(targets).await.expect_err("refused");
        assert_eq!(code(&e), want, "{shown}");
    }
    // 50 values and 5 targets are fine.
    let c = send(
        (0..5)
            .map(|i| {
                Target::builder()
                    .key(format!("tag:k{i}"))
                    .set_values(Some((0..50).map(|v| format!("v{v}")).collect()))
                    .build()
            })
            .collect(),
    )
    .await
    .expect("limits");
    assert_eq!(
        c.command().and_then(|c| c.status_details()),
        Some("NoInstancesInTag")
    );
    // Both InstanceIds and Targets.
    let e = s
        .client
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&a.instance_id)
        .targets(target("tag:role", &["web"]))
        .parameters("commands", vec!["true".to_string()])
        .send()
        .await
        .expect_err("both");
    assert_eq!(code(&e), "ValidationException");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_instance_information_tag_filters() {
    let s = TestServer::start().await;
    let agents = fleet(&s).await;
    let describe = |filters: Vec<(&str, &[&str])>| {
        let filters: Vec<InstanceInformationStringFilter> = filters
            .into_iter()
            .map(|(k, vs)| {
                InstanceInformationStringFilter::builder()
                    .key(k)
                    .set_values(Some(vs.iter().map(|s| s.to_string()).collect()))
                    .build()
                    .expect("filter")
            })
            .collect();
        s.client
            .describe_instance_information()
            .set_filters(Some(filters))
            .send()
    };
    let ids = |out: aws_sdk_ssm::operation::describe_instance_information::DescribeInstanceInformationOutput| {
        sorted(
            out.instance_information_list()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect(),
        )
    };
    assert_eq!(
        ids(describe(vec![("tag:role", &["web"])]).await.expect("tag")),
        ids_of(&agents, &[0, 2])
    );
    assert_eq!(
        ids(describe(vec![("tag-key", &["owner", "team"])])
            .await
            .expect("key")),
        ids_of(&agents, &[0, 1, 3])
    );
    assert_eq!(
        ids(
            describe(vec![("tag:role", &["web", "db"]), ("tag-key", &["team"])])
                .await
                .expect("and")
        ),
        ids_of(&agents, &[0, 1])
    );
    assert!(ids(describe(vec![("tag:role", &["nope"])]).await.expect("none")).is_empty());
    let e = describe(vec![("tag:role", &["web"]), ("PingStatus", &["Online"])])
        .await
        .expect_err("mixed");
    assert_eq!(code(&e), "ValidationException");
    for a in agents {
        a.stop().await;
    }
}
