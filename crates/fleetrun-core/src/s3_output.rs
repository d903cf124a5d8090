//! Output in S3: where each step's stdout and stderr are stored when a command names
//! `OutputS3BucketName`, and what the invocation records say about it (integration fact sheet §2;
//! ARCHITECTURE.md, "S3 output").
//!
//! The key layout is amazon-ssm-agent's:
//! `<OutputS3KeyPrefix>/<CommandId>/<InstanceId>/<plugin without ':'>/<step without ':'>/stdout|stderr`,
//! joined as Go's `path.Join` does (no empty parts, no `//`, no trailing `/`).

use crate::ids::{CommandId, InstanceId};
use crate::live_output::OutputStream;

/// Where a command's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLocation {
    pub bucket: String,
    pub key_prefix: String,
}

impl OutputLocation {
    /// From the command's echo: none when no bucket was named.
    pub fn of(bucket: &str, key_prefix: &str) -> Option<Self> {
        (!bucket.is_empty()).then(|| Self {
            bucket: bucket.to_owned(),
            key_prefix: key_prefix.to_owned(),
        })
    }

    /// `CommandPlugins[].OutputS3KeyPrefix`: the prefix, the command, the node and the plugin.
    pub fn plugin_prefix(&self, command: &CommandId, node: &InstanceId, action: &str) -> String {
        join(&[
            &self.key_prefix,
            command.as_str(),
            node.as_str(),
            &without_colons(action),
        ])
    }

    /// The object a step's stream is stored at.
    pub fn object_key(
        &self,
        command: &CommandId,
        node: &InstanceId,
        action: &str,
        step: &str,
        stream: OutputStream,
    ) -> String {
        join(&[
            &self.plugin_prefix(command, node, action),
            &without_colons(&step_dir(step, action)),
            stream.as_str(),
        ])
    }
}

/// The step's directory name before the `:` are removed: for schema 2.x documents the step's
/// name; for schema 1.x ones, whose steps are named after their plugin, the runtimeConfig
/// property id, `0.<plugin>` (AWS-RunShellScript's is `0.aws:runShellScript`).
fn step_dir(step: &str, action: &str) -> String {
    if step == action {
        format!("0.{action}")
    } else {
        step.to_owned()
    }
}

fn without_colons(s: &str) -> String {
    s.replace(':', "")
}

/// Go's `path.Join` for the relative parts used here: empty parts and empty segments dropped.
fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split('/'))
        .filter(|segment| !segment.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// A stored object's URL, path style: `<base>/<bucket>/<key>`, where `base` is AWS's regional
/// endpoint (`https://s3.<region>.amazonaws.com`) or the S3 endpoint the server is configured with.
pub fn object_url(base: &str, bucket: &str, key: &str) -> String {
    format!("{}/{bucket}/{key}", base.trim_end_matches('/'))
}

/// AWS's regional S3 endpoint, the URL base when no other S3 endpoint is configured.
pub fn aws_endpoint(region: &str) -> String {
    format!("https://s3.{region}.amazonaws.com")
}

/// An invocation whose output waits to be uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadJob {
    pub command_id: CommandId,
    pub instance_id: InstanceId,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (CommandId, InstanceId) {
        (
            CommandId::parse("1231bb3b-1bd9-4e65-b1d5-2fbbe2d0ab1d").expect("id"),
            InstanceId::parse("mi-0123456789abcdef0").expect("id"),
        )
    }

    #[test]
    fn keys_follow_the_agent() {
        let (c, i) = ids();
        let loc = OutputLocation::of("bucket", "my-output").expect("bucket");
        assert_eq!(
            loc.object_key(
                &c,
                &i,
                "aws:runShellScript",
                "aws:runShellScript",
                OutputStream::Stdout
            ),
            format!("my-output/{c}/{i}/awsrunShellScript/0.awsrunShellScript/stdout")
        );
        assert_eq!(
            loc.plugin_prefix(&c, &i, "aws:runShellScript"),
            format!("my-output/{c}/{i}/awsrunShellScript")
        );
        // A schema 2.x step keeps its own name.
        assert_eq!(
            loc.object_key(
                &c,
                &i,
                "aws:runShellScript",
                "PatchLinux",
                OutputStream::Stderr
            ),
            format!("my-output/{c}/{i}/awsrunShellScript/PatchLinux/stderr")
        );
        // No prefix, or one with slashes to spare.
        let bare = OutputLocation::of("b", "").expect("bucket");
        assert!(bare
            .object_key(&c, &i, "aws:runShellScript", "s", OutputStream::Stdout)
            .starts_with(c.as_str()));
        let slashy = OutputLocation::of("b", "/a//b/").expect("bucket");
        assert_eq!(
            slashy.plugin_prefix(&c, &i, "aws:x"),
            format!("a/b/{c}/{i}/awsx")
        );
        assert_eq!(OutputLocation::of("", "p"), None);
    }

    #[test]
    fn urls_are_path_style() {
        assert_eq!(
            object_url(&aws_endpoint("us-east-2"), "bucket", "a/b/stdout"),
            "https://s3.us-east-2.amazonaws.com/bucket/a/b/stdout"
        );
        assert_eq!(
            object_url("http://127.0.0.1:9000/", "b", "k"),
            "http://127.0.0.1:9000/b/k"
        );
    }
}
