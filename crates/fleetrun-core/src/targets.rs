//! Node tags and SendCommand targets: the tag rules (limits, allowed characters, the reserved `aws:`
//! prefix) and the parsing of `Target` keys into [`TargetSpec`]s that a [`crate::Store`] resolves to
//! registered nodes when a command is sent.
//!
//! Semantics (AWS Run Command): several targets are ANDed, the values of one target are ORed.
//! `InstanceIds` (any letter case) lists node ids, `tag:<key>` lists values of that tag key,
//! `tag-key` lists tag keys, `resource-groups:Name` names one resource group (its tag query is
//! resolved when the command is sent, `crate::resource_groups`) and
//! `resource-groups:ResourceTypeFilters` narrows that group to resource types. This module does no
//! I/O and knows no wire format.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::{CoreError, CoreResult, TargetKeyProblem};
use crate::ids::InstanceId;

/// Most tags one node may carry (AWS: 50 per resource, `TooManyTagsError` beyond).
pub const MAX_TAGS_PER_NODE: usize = 50;
/// Most entries in one AddTagsToResource `Tags` list (the model's `len ..1000`).
pub const MAX_TAGS_PER_REQUEST: usize = 1000;
/// Tag key length bounds (characters).
pub const TAG_KEY_MIN: usize = 1;
pub const TAG_KEY_MAX: usize = 128;
/// Tag value length bound (characters; empty values are allowed).
pub const TAG_VALUE_MAX: usize = 256;
/// The model's pattern for tag keys and values, as AWS prints it in ValidationException messages.
pub const TAG_PATTERN: &str = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$";
/// Most Target entries in one SendCommand.
pub const MAX_TARGETS: usize = 5;
/// Most values in one Target.
pub const MAX_TARGET_VALUES: usize = 50;

/// The model's `TargetKey` pattern.
pub const TARGET_KEY_PATTERN: &str =
    r"^[\p{L}\p{Z}\p{N}_.:/=\-@]*$|resource-groups:ResourceTypeFilters|resource-groups:Name";

static TAG_RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(TAG_PATTERN).ok());
static TARGET_KEY_RE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=\-@]*$").ok());

/// True when a Target key matches [`TARGET_KEY_PATTERN`] (as a whole string).
pub fn target_key_ok(key: &str) -> bool {
    key == "resource-groups:ResourceTypeFilters"
        || key == "resource-groups:Name"
        || TARGET_KEY_RE.as_ref().is_some_and(|re| re.is_match(key))
}

/// True when `s` matches [`TAG_PATTERN`] (Unicode letters, separators, numbers and `_.:/=+-@`).
pub fn tag_text_ok(s: &str) -> bool {
    match TAG_RE.as_ref() {
        Some(re) => re.is_match(s),
        // The pattern is a constant that compiles; this arm only avoids a panic path.
        None => false,
    }
}

/// True for keys in the `aws:` namespace (any letter case), which AWS reserves for itself.
///
/// choice: AddTagsToResource / RemoveTagsFromResource refuse such keys with `ValidationException`
/// (AWS documents the reservation for all services but not the SSM error code).
pub fn is_reserved_key(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))
}

/// One resolved Target criterion. A node matches a list of specs when it matches every spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// The node is one of these.
    InstanceIds(Vec<InstanceId>),
    /// The node has tag `key` with any of `values`.
    Tag { key: String, values: Vec<String> },
    /// The node has any of these tag keys.
    TagKeys(Vec<String>),
}

/// What a Target key asks for, before its values are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKey {
    InstanceIds,
    /// `tag:<key>`, with the tag key.
    Tag(String),
    TagKey,
    /// `resource-groups:Name`.
    GroupName,
    /// `resource-groups:ResourceTypeFilters`.
    GroupTypeFilters,
}

/// Interprets a SendCommand Target key.
///
/// `InstanceIds` matches in any letter case (the User Guide writes `instanceids`); `tag:` and
/// `tag-key` and the two `resource-groups:` keys are matched exactly, as AWS does; anything else →
/// [`CoreError::UnsupportedTargetKey`].
pub fn parse_target_key(key: &str) -> CoreResult<TargetKey> {
    if key.eq_ignore_ascii_case("InstanceIds") {
        return Ok(TargetKey::InstanceIds);
    }
    if key == "tag-key" {
        return Ok(TargetKey::TagKey);
    }
    if let Some(tag) = key.strip_prefix("tag:") {
        let n = tag.chars().count();
        if !(TAG_KEY_MIN..=TAG_KEY_MAX).contains(&n) {
            return Err(CoreError::UnsupportedTargetKey {
                key: key.to_string(),
                problem: TargetKeyProblem::TagKeyLength {
                    min: TAG_KEY_MIN,
                    max: TAG_KEY_MAX,
                },
            });
        }
        return Ok(TargetKey::Tag(tag.to_string()));
    }
    if key == "resource-groups:Name" {
        return Ok(TargetKey::GroupName);
    }
    if key == "resource-groups:ResourceTypeFilters" {
        return Ok(TargetKey::GroupTypeFilters);
    }
    Err(CoreError::UnsupportedTargetKey {
        key: key.to_string(),
        problem: TargetKeyProblem::Unknown,
    })
}

/// Whether adding tags took a node over [`MAX_TAGS_PER_NODE`]: refused only when it ends with more
/// than allowed *and* more than it had (a node already over the limit may still change values).
pub fn tag_limit_exceeded(before: usize, after: usize) -> bool {
    after > MAX_TAGS_PER_NODE && after > before
}

/// A `tag:<key>` or `tag-key` filter of DescribeInstanceInformation (same semantics as targets),
/// or `None` when `key` is not a tag filter.
pub fn tag_filter(key: &str, values: &[String]) -> Option<TargetSpec> {
    if key == "tag-key" {
        return Some(TargetSpec::TagKeys(values.to_vec()));
    }
    key.strip_prefix("tag:").map(|k| TargetSpec::Tag {
        key: k.to_string(),
        values: values.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_text_follows_the_model_pattern() {
        for ok in [
            "",
            "role",
            "web 1",
            "a_b.c:d/e=f+g-h@i",
            "café",
            "日本",
            "٣",
        ] {
            assert!(tag_text_ok(ok), "{ok:?}");
        }
        for bad in ["a*b", "a\tb", "a\nb", "x#", "a,b", "(x)", "a!"] {
            assert!(!tag_text_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn target_key_pattern() {
        for ok in [
            "InstanceIds",
            "tag:role",
            "tag-key",
            "tag:a b",
            "resource-groups:Name",
        ] {
            assert!(target_key_ok(ok), "{ok}");
        }
        for bad in ["tag:a*b", "tag:a+b", "x\ty", "a,b"] {
            assert!(!target_key_ok(bad), "{bad}");
        }
    }

    #[test]
    fn reserved_prefix_is_case_insensitive() {
        assert!(
            is_reserved_key("aws:foo") && is_reserved_key("AWS:foo") && is_reserved_key("Aws:")
        );
        assert!(!is_reserved_key("aws") && !is_reserved_key("awsx:") && !is_reserved_key("é"));
    }

    #[test]
    fn target_keys() {
        assert_eq!(
            parse_target_key("InstanceIds").ok(),
            Some(TargetKey::InstanceIds)
        );
        assert_eq!(
            parse_target_key("instanceids").ok(),
            Some(TargetKey::InstanceIds)
        );
        assert_eq!(parse_target_key("tag-key").ok(), Some(TargetKey::TagKey));
        assert_eq!(
            parse_target_key("tag:role").ok(),
            Some(TargetKey::Tag("role".into()))
        );
        assert_eq!(
            parse_target_key("tag:a:b").ok(),
            Some(TargetKey::Tag("a:b".into()))
        );
        assert!(matches!(
            parse_target_key("tag:"),
            Err(CoreError::UnsupportedTargetKey { .. })
        ));
        assert_eq!(
            parse_target_key("resource-groups:Name").ok(),
            Some(TargetKey::GroupName)
        );
        assert_eq!(
            parse_target_key("resource-groups:ResourceTypeFilters").ok(),
            Some(TargetKey::GroupTypeFilters)
        );
        for bad in [
            "role",
            "Tag:role",
            "TAG-KEY",
            "ParameterValues",
            "resource-groups:Other",
        ] {
            assert!(
                matches!(
                    parse_target_key(bad),
                    Err(CoreError::UnsupportedTargetKey { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn tag_filters() {
        let v = vec!["web".to_string()];
        assert_eq!(
            tag_filter("tag:role", &v),
            Some(TargetSpec::Tag {
                key: "role".into(),
                values: v.clone()
            })
        );
        assert_eq!(
            tag_filter("tag-key", &v),
            Some(TargetSpec::TagKeys(v.clone()))
        );
        assert_eq!(tag_filter("PingStatus", &v), None);
    }
}
