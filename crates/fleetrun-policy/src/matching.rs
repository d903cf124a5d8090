//! Pattern matching for `Action`, `Resource` and `StringLike` (security-facts.md §6.2), and the
//! parse-time shape checks of action and resource patterns.
//!
//! - `*` matches any run of characters (including none), `?` exactly one character; there is no
//!   escape, so a literal `*` in a pattern is always a wildcard.
//! - Actions compare case-insensitively (ASCII): `ssm:list*` matches `ssm:ListCommands`.
//! - Resources compare case-sensitively and segment by segment: the pattern is split at its first
//!   five colons (`arn:partition:service:region:account:resource`), the resource into as many parts,
//!   and each pair must match. Wildcards in the *last* pattern segment therefore span `:` and `/`
//!   (`arn:aws:ssm:*` covers every SSM ARN, `document/*` covers `document/a/b`), while a wildcard in
//!   an earlier segment stays inside it, so `arn:aws:ssm:*:111111111111:document/*` cannot be
//!   satisfied by smuggling the account into a region or a document name.
//!   A specific ARN never matches the resource `"*"` (actions without resource types); only the
//!   pattern `"*"` does.
//!
//! Matching is the classic two-pointer glob with one backtrack point: O(pattern × text) at worst,
//! never exponential, whatever a policy author writes.

/// Whether `text` matches `pattern` (`*`, `?`), optionally ignoring ASCII case.
pub fn glob(pattern: &str, text: &str, ignore_ascii_case: bool) -> bool {
    if !pattern.contains(['*', '?']) {
        return if ignore_ascii_case {
            pattern.eq_ignore_ascii_case(text)
        } else {
            pattern == text
        };
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let same = |a: char, b: char| {
        if ignore_ascii_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where the last `*` was and which text position it is currently made to end at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || same(c, t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    // Let the last `*` swallow one more character and retry after it.
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether an `Action` pattern matches `action` (e.g. `"ssm:SendCommand"`), ignoring case.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    glob(pattern, action, true)
}

/// Whether a `Resource` pattern matches `resource`, segment by segment (see the module docs).
pub fn resource_matches(pattern: &str, resource: &str) -> bool {
    let pattern_parts: Vec<&str> = pattern.splitn(6, ':').collect();
    let resource_parts: Vec<&str> = resource.splitn(pattern_parts.len(), ':').collect();
    resource_parts.len() == pattern_parts.len()
        && pattern_parts
            .iter()
            .zip(&resource_parts)
            .all(|(p, r)| glob(p, r, false))
}

/// Why an action pattern is malformed, or `None` if it is `*` or `service:Name` (service letters,
/// digits and `-`; name letters, digits and `_`; wildcards in both).
pub(crate) fn action_problem(pattern: &str) -> Option<&'static str> {
    if pattern == "*" {
        return None;
    }
    let Some((service, name)) = pattern.split_once(':') else {
        return Some("expected \"*\" or \"<service>:<action>\"");
    };
    let service_ok = !service.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '*' | '?'));
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '?'));
    if !service_ok {
        Some("the service prefix may hold only letters, digits, '-' and wildcards")
    } else if !name_ok {
        Some("the action name may hold only letters, digits, '_' and wildcards")
    } else {
        None
    }
}

/// Why a resource pattern is malformed, or `None` if it is `*` or an ARN pattern.
pub(crate) fn resource_problem(pattern: &str) -> Option<&'static str> {
    if pattern == "*" {
        return None;
    }
    if !pattern.starts_with("arn:") {
        return Some("expected \"*\" or an ARN (arn:partition:service:region:account:resource)");
    }
    if pattern.chars().any(char::is_whitespace) {
        return Some("an ARN holds no whitespace");
    }
    match pattern.split(':').nth(2) {
        Some(service) if service.contains(['*', '?']) => {
            Some("the service segment of an ARN cannot hold a wildcard")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let table: &[(&str, &str, bool, bool)] = &[
            // (pattern, text, ignore case, matches)
            ("", "", false, true),
            ("", "a", false, false),
            ("*", "", false, true),
            ("*", "anything:at/all", false, true),
            ("?", "", false, false),
            ("?", "a", false, true),
            ("?", "ab", false, false),
            ("a?c", "abc", false, true),
            ("a?c", "ac", false, false),
            ("a*c", "ac", false, true),
            ("a*c", "abbbc", false, true),
            ("a*c", "abbbd", false, false),
            ("*a*b*c*", "xxaxxbxxcxx", false, true),
            ("*a*b*c*", "xxaxxcxxbxx", false, false),
            ("a**b", "ab", false, true),
            ("ABC", "abc", false, false),
            ("ABC", "abc", true, true),
            ("A?C*", "abcdef", true, true),
            ("é?", "éx", false, true),
            ("?", "é", false, true),
            ("Web*", "WebServers", false, true),
            ("web*", "WebServers", false, false),
        ];
        for &(pattern, text, fold, want) in table {
            assert_eq!(
                glob(pattern, text, fold),
                want,
                "{pattern:?} vs {text:?} (fold {fold})"
            );
        }
    }

    #[test]
    fn glob_on_pathological_input_is_quick() {
        let text = "a".repeat(5_000);
        let pattern = format!("{}b", "*a".repeat(500));
        assert!(!glob(&pattern, &text, false));
    }

    #[test]
    fn action_table() {
        let table: &[(&str, &str, bool)] = &[
            ("ssm:SendCommand", "ssm:SendCommand", true),
            ("SSM:sendcommand", "ssm:SendCommand", true),
            ("ssm:SendCommand", "SSM:SENDCOMMAND", true),
            ("ssm:*", "ssm:SendCommand", true),
            ("*", "fleetrun:CreateAccessKey", true),
            ("ssm:List*", "ssm:ListCommands", true),
            ("ssm:list*", "ssm:ListCommandInvocations", true),
            ("ssm:List*", "ssm:SendCommand", false),
            ("ssm:Get*", "ssm:GetCommandInvocation", true),
            ("ssm:Describe*", "ssm:DescribeInstanceInformation", true),
            ("ssm:?endCommand", "ssm:SendCommand", true),
            ("ssm:?endCommand", "ssm:endCommand", false),
            ("ssm:Send", "ssm:SendCommand", false),
            ("ec2:*", "ssm:SendCommand", false),
            ("ssm:*", "ssmx:SendCommand", false),
            ("fleetrun:*", "ssm:SendCommand", false),
        ];
        for &(pattern, action, want) in table {
            assert_eq!(
                action_matches(pattern, action),
                want,
                "{pattern:?} vs {action:?}"
            );
        }
    }

    #[test]
    fn resource_table() {
        let doc = "arn:aws:ssm:us-east-1::document/AWS-RunShellScript";
        let mine = "arn:aws:ssm:us-east-1:111111111111:document/Safe-Deploy";
        let node = "arn:aws:ssm:us-east-1:111111111111:managed-instance/mi-0123456789abcdef0";
        let table: &[(&str, &str, bool)] = &[
            ("*", doc, true),
            ("*", "*", true),
            (doc, doc, true),
            ("arn:aws:ssm:*:*:document/*", doc, true),
            ("arn:aws:ssm:*:*:document/*", mine, true),
            ("arn:aws:ssm:*:*:document/*", node, false),
            ("arn:aws:ssm:*:*:managed-instance/*", node, true),
            ("arn:aws:ssm:*:*:managed-instance/*", doc, false),
            ("arn:aws:ssm:*", doc, true),
            ("arn:aws:ssm:*", node, true),
            ("arn:aws:ssm:us-east-1:*", node, true),
            (
                "arn:aws:ssm:us-east-1:*",
                "arn:aws:ssm:eu-west-1:1:document/x",
                false,
            ),
            ("arn:aws:ssm:*:*:document/Safe-*", mine, true),
            ("arn:aws:ssm:*:*:document/Safe-*", doc, false),
            ("arn:aws:ssm:us-east-1::document/AWS-*", doc, true),
            ("arn:aws:ssm:us-east-1::document/AWS-*", mine, false),
            ("arn:aws:ssm:us-east-1::document/aws-*", doc, false),
            (
                "arn:aws:ssm:US-EAST-1::document/AWS-RunShellScript",
                doc,
                false,
            ),
            (
                "arn:aws:ssm:us-east-?::document/AWS-RunShellScript",
                doc,
                true,
            ),
            // A trailing wildcard spans `/` and `:` inside the resource segment.
            (
                "arn:aws:ssm:*:*:document/*",
                "arn:aws:ssm:r:1:document/a/b:c",
                true,
            ),
            // An earlier segment's wildcard does not run into the next segment.
            (
                "arn:aws:ssm:*:111:document/*",
                "arn:aws:ssm:r:222:document/x:111:document/y",
                false,
            ),
            ("arn:aws:ssm:*:document/x", doc, false),
            // A specific ARN never matches the "*" of actions without resource types.
            ("arn:aws:ssm:*", "*", false),
            ("arn:*", "*", false),
            ("arn:aws:ssm:*:*:document/*", "*", false),
            ("arn:aws:ssm:*:*:document/*", "", false),
        ];
        for &(pattern, resource, want) in table {
            assert_eq!(
                resource_matches(pattern, resource),
                want,
                "{pattern:?} vs {resource:?}"
            );
        }
    }

    #[test]
    fn action_shape_table() {
        let ok = [
            "*",
            "ssm:*",
            "ssm:SendCommand",
            "ssm:List*",
            "fleetrun:*",
            "ssm-guiconnect:Get?",
            "*:*",
        ];
        for pattern in ok {
            assert_eq!(action_problem(pattern), None, "{pattern:?}");
        }
        let bad = [
            "",
            "ssm",
            "ssm:",
            ":Send",
            "ssm:Send Command",
            "ssm:Send:Command",
            "s s:x",
            "ssm:${aws:username}",
        ];
        for pattern in bad {
            assert!(action_problem(pattern).is_some(), "{pattern:?}");
        }
    }

    #[test]
    fn resource_shape_table() {
        let ok = [
            "*",
            "arn:aws:ssm:*",
            "arn:aws:ssm:*:*:document/*",
            "arn:aws:ssm:us-east-1::document/AWS-*",
            "arn:*",
        ];
        for pattern in ok {
            assert_eq!(resource_problem(pattern), None, "{pattern:?}");
        }
        let bad = [
            "",
            "**",
            "?",
            "document/*",
            "arn:aws:*:*:*:*",
            "arn:aws:s?m:*",
            "arn:aws:ssm:* ",
            "ARN:aws:ssm:*",
        ];
        for pattern in bad {
            assert!(resource_problem(pattern).is_some(), "{pattern:?}");
        }
    }
}
