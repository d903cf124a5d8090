//! API authentication and authorization end to end: the real aws-sdk-ssm client signing with the
//! administrator key, with wrong secrets, unknown keys, wrong regions; requests signed by hand with
//! fleetrun-sigv4 for the cases an SDK will not produce (expired, wrong service, no signature);
//! keys created through the admin API with IAM policies that allow only part of the API.

mod common;

use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::{ResourceTypeForTagging, Tag, Target};
use common::{client, client_in, code, SentId, Signing, TestServer};
use fleetrun_wire::admin::{CreateAccessKeyResult, TARGET_PREFIX};

/// A POST / signed with `key` as if at `now_unix`, for `region` and `service`; `None` key = unsigned.
async fn raw_call(
    s: &TestServer,
    target: &str,
    body: &str,
    key: Option<&(String, String)>,
    now_unix: i64,
    region: &str,
    service: &str,
) -> (u16, serde_json::Value) {
    let signing = Signing {
        key,
        now_unix,
        region,
        service,
    };
    let resp = s.signed_post(Some(target), body, &signing).await;
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Creates a key through the admin API (signed with the administrator key).
async fn create_key(s: &TestServer, user: &str, policy: &str) -> (String, String) {
    let body = serde_json::json!({"UserName": user, "PolicyDocument": policy}).to_string();
    let target = format!("{TARGET_PREFIX}CreateAccessKey");
    let (status, json) =
        raw_call(s, &target, &body, Some(&s.admin), now(), "us-east-1", "ssm").await;
    assert_eq!(status, 200, "{json}");
    let made: CreateAccessKeyResult = serde_json::from_value(json).expect("shape");
    (
        made.access_key.access_key_id,
        made.access_key.secret_access_key,
    )
}

fn error_code(json: &serde_json::Value) -> &str {
    json["__type"].as_str().unwrap_or("<none>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_unknown_key_and_wrong_region_get_their_named_errors() {
    let s = TestServer::start().await;
    s.client
        .list_commands()
        .send()
        .await
        .expect("the right key works");

    let wrong_secret = client(&s.endpoint, &(s.admin.0.clone(), "not-the-secret".into()));
    let err = wrong_secret
        .list_commands()
        .send()
        .await
        .expect_err("refused");
    assert_eq!(code(&err), "InvalidSignatureException");

    let unknown = client(&s.endpoint, &("AKIAUNKNOWNUNKNOWN00".into(), "x".into()));
    let err = unknown.list_commands().send().await.expect_err("refused");
    assert_eq!(code(&err), "UnrecognizedClientException");
    let msg = err
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or("");
    assert_eq!(
        msg,
        "The security token included in the request is invalid."
    );

    let elsewhere = client_in(&s.endpoint, &s.admin, "eu-west-1");
    let err = elsewhere.list_commands().send().await.expect_err("refused");
    assert_eq!(code(&err), "InvalidSignatureException");
    let msg = err
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or("");
    assert!(
        msg.starts_with("Credential should be scoped to a valid region, not 'eu-west-1'"),
        "{msg}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_expired_future_and_wrong_service_requests_are_refused() {
    let s = TestServer::start().await;
    let list = "AmazonSSM.ListCommands";
    let (status, json) = raw_call(&s, list, "{}", None, now(), "us-east-1", "ssm").await;
    assert_eq!(
        (status, error_code(&json)),
        (400, "MissingAuthenticationTokenException")
    );
    assert_eq!(json["Message"], "Request is missing Authentication Token");

    // Six minutes off is outside SSM's five-minute window, four minutes inside it.
    let key = Some(&s.admin);
    let (status, json) = raw_call(&s, list, "{}", key, now() - 360, "us-east-1", "ssm").await;
    assert_eq!(
        (status, error_code(&json)),
        (400, "InvalidSignatureException")
    );
    let msg = json["Message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("Signature expired: ") && msg.ends_with(" - 5 min.)"),
        "{msg}"
    );
    let (status, json) = raw_call(&s, list, "{}", key, now() + 360, "us-east-1", "ssm").await;
    assert_eq!(status, 400);
    let msg = json["Message"].as_str().unwrap_or("");
    assert!(msg.starts_with("Signature not yet current: "), "{msg}");
    let (status, _) = raw_call(&s, list, "{}", key, now() - 240, "us-east-1", "ssm").await;
    assert_eq!(status, 200);

    let (status, json) = raw_call(&s, list, "{}", key, now(), "us-east-1", "ec2").await;
    assert_eq!(
        (status, error_code(&json)),
        (400, "InvalidSignatureException")
    );
    assert_eq!(
        json["Message"],
        "Credential should be scoped to correct service: 'ssm'. "
    );

    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_over_another_body_does_not_cover_this_one() {
    let s = TestServer::start().await;
    let host = s.endpoint.trim_start_matches("http://").to_string();
    let headers: Vec<(&str, &[u8])> = vec![
        ("content-type", b"application/x-amz-json-1.1"),
        ("host", host.as_bytes()),
        ("x-amz-target", b"AmazonSSM.ListCommands"),
    ];
    let signed_body = b"{}";
    let request = fleetrun_sigv4::HttpRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: signed_body,
    };
    let creds = fleetrun_sigv4::Credentials {
        access_key_id: &s.admin.0,
        secret_access_key: &s.admin.1,
        session_token: None,
    };
    let signature = fleetrun_sigv4::sign(&request, &creds, "us-east-1", "ssm", now());
    let send = |body: &'static str| {
        let mut req = common::node::http()
            .post(format!("{}/", s.endpoint))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "AmazonSSM.ListCommands")
            .body(body);
        for (name, value) in &signature {
            req = req.header(name, value);
        }
        req.send()
    };
    let tampered = send(r#"{"MaxResults":5}"#).await.expect("post");
    assert_eq!(tampered.status().as_u16(), 400);
    let json: serde_json::Value = tampered.json().await.expect("json");
    assert_eq!(error_code(&json), "InvalidSignatureException");
    // The same headers over the body they signed are accepted.
    let genuine = send("{}").await.expect("post");
    assert_eq!(genuine.status().as_u16(), 200);
    s.stop().await;
}

const LIST_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:List*","Resource":"*"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_only_key_lists_but_cannot_send_and_disabled_or_deleted_keys_stop_working() {
    let s = TestServer::start().await;
    let agent = s.add_agent().await;
    let key = create_key(&s, "auditor", LIST_ONLY).await;
    let auditor = client(&s.endpoint, &key);
    auditor
        .list_commands()
        .send()
        .await
        .expect("List* is allowed");
    let err = auditor
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&agent.instance_id)
        .parameters("commands", vec!["echo no".into()])
        .send()
        .await
        .expect_err("SendCommand is not allowed");
    assert_eq!(code(&err), "AccessDeniedException");
    let msg = err
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or("");
    assert_eq!(
        msg,
        "User: arn:aws:iam::000000000000:user/auditor is not authorized to perform: ssm:SendCommand on resource: arn:aws:ssm:us-east-1::document/AWS-RunShellScript because no identity-based policy allows the ssm:SendCommand action"
    );
    let err = auditor
        .create_activation()
        .iam_role("r")
        .send()
        .await
        .expect_err("CreateActivation is not allowed");
    assert_eq!(code(&err), "AccessDeniedException");
    let listed = s.client.list_commands().send().await.expect("list");
    assert!(listed.commands().is_empty(), "nothing was sent");

    // Disabled: refused as an unknown key at once; enabled again: works; deleted: refused.
    let update =
        |status: &str| serde_json::json!({"AccessKeyId": key.0, "Status": status}).to_string();
    let target = format!("{TARGET_PREFIX}UpdateAccessKey");
    let admin = Some(&s.admin);
    let (st, j) = raw_call(
        &s,
        &target,
        &update("Inactive"),
        admin,
        now(),
        "us-east-1",
        "ssm",
    )
    .await;
    assert_eq!(st, 200, "{j}");
    let err = auditor.list_commands().send().await.expect_err("disabled");
    assert_eq!(code(&err), "UnrecognizedClientException");
    let (st, _) = raw_call(
        &s,
        &target,
        &update("Active"),
        admin,
        now(),
        "us-east-1",
        "ssm",
    )
    .await;
    assert_eq!(st, 200);
    auditor.list_commands().send().await.expect("enabled again");
    let del = serde_json::json!({"AccessKeyId": key.0}).to_string();
    let target = format!("{TARGET_PREFIX}DeleteAccessKey");
    let (st, _) = raw_call(&s, &target, &del, admin, now(), "us-east-1", "ssm").await;
    assert_eq!(st, 200);
    let err = auditor.list_commands().send().await.expect_err("deleted");
    assert_eq!(code(&err), "UnrecognizedClientException");
    // The auditor may not manage keys.
    let target = format!("{TARGET_PREFIX}ListAccessKeys");
    let other = create_key(&s, "auditor2", LIST_ONLY).await;
    let (st, j) = raw_call(&s, &target, "{}", Some(&other), now(), "us-east-1", "ssm").await;
    assert_eq!((st, error_code(&j)), (400, "AccessDeniedException"));
    agent.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_allowed_only_safe_documents_cannot_run_aws_run_shell_script() {
    let s = TestServer::start().await;
    let agent = s.add_agent().await;
    s.create_document(
        "Safe-Hello",
        r#"{"schemaVersion":"2.2","description":"hi","mainSteps":[{"action":"aws:runShellScript","name":"hi","inputs":{"runCommand":["echo safe"]}}]}"#,
    )
    .await
    .expect("create document");
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"ssm:SendCommand","Resource":["arn:aws:ssm:*:*:document/Safe-*","arn:aws:ssm:*:*:managed-instance/*"]},
        {"Effect":"Allow","Action":["ssm:Get*","ssm:List*"],"Resource":"*"}]}"#;
    let key = create_key(&s, "operator", policy).await;
    let operator = client(&s.endpoint, &key);
    let err = operator
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&agent.instance_id)
        .parameters("commands", vec!["echo no".into()])
        .send()
        .await
        .expect_err("refused");
    assert_eq!(code(&err), "AccessDeniedException");
    let id = operator
        .send_command()
        .document_name("Safe-Hello")
        .instance_ids(&agent.instance_id)
        .send()
        .await
        .expect("Safe-* is allowed")
        .sent_id();
    let done = s.wait(&id, &agent.instance_id).await;
    assert_eq!(done.standard_output_content(), Some("safe\n"));
    agent.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_dev_nodes_gets_access_denied_invocations_for_the_others() {
    let s = TestServer::start().await;
    let dev = s.add_agent().await;
    let prod = s.add_agent().await;
    for (node, env) in [(&dev.instance_id, "dev"), (&prod.instance_id, "prod")] {
        s.client
            .add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::ManagedInstance)
            .resource_id(node)
            .tags(Tag::builder().key("env").value(env).build().expect("tag"))
            .tags(Tag::builder().key("fleet").value("t").build().expect("tag"))
            .send()
            .await
            .expect("tag");
    }
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"ssm:SendCommand","Resource":"arn:aws:ssm:*::document/AWS-RunShellScript"},
        {"Effect":"Allow","Action":"ssm:SendCommand","Resource":"arn:aws:ssm:*:*:managed-instance/*",
         "Condition":{"StringEquals":{"ssm:resourceTag/env":"dev"}}},
        {"Effect":"Allow","Action":["ssm:List*","ssm:Get*"],"Resource":"*"}]}"#;
    let key = create_key(&s, "dev-runner", policy).await;
    let runner = client(&s.endpoint, &key);
    let sent = runner
        .send_command()
        .document_name("AWS-RunShellScript")
        .targets(Target::builder().key("tag:fleet").values("t").build())
        .parameters("commands", vec!["echo dev".into()])
        .send()
        .await
        .expect("send by tag");
    let command = sent.command().expect("command");
    assert_eq!(command.target_count(), 2);
    let id = sent.sent_id();
    let ran = s.wait(&id, &dev.instance_id).await;
    assert_eq!(ran.standard_output_content(), Some("dev\n"));
    let denied = s.wait(&id, &prod.instance_id).await;
    assert_eq!(denied.status_details(), Some("AccessDenied"), "{denied:?}");
    assert_eq!(denied.status().map(|x| x.as_str()), Some("Failed"));
    // Naming the prod node refuses the whole call.
    let err = runner
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&prod.instance_id)
        .parameters("commands", vec!["echo no".into()])
        .send()
        .await
        .expect_err("refused");
    assert_eq!(code(&err), "AccessDeniedException");
    dev.stop().await;
    prod.stop().await;
    s.stop().await;
}

/// Under umask 022 the data dir is 0700 and every file holding a secret or output is 0600, so a
/// local unprivileged user can read neither the administrator key nor the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_and_secret_files_are_private_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let s = TestServer::start().await;
    s.client
        .list_commands()
        .send()
        .await
        .expect("a write-free call");
    let agent = s.add_agent().await; // a write: the WAL exists
    let data = s.dir.path().join("data");
    let mode = |name: &str| {
        let path = data.join(name);
        std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700, "data dir");
    // On PostgreSQL the data dir holds no database files.
    let database: &[&str] = if common::on_postgres() {
        &[]
    } else {
        &["fleetrun.db", "fleetrun.db-wal", "fleetrun.db-shm"]
    };
    for file in database.iter().copied().chain(["admin-credentials"]) {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    agent.stop().await;
    s.stop().await;
    nix::sys::stat::umask(old);
}
