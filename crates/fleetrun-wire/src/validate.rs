//! Request-constraint checks with AWS's `ValidationException` wording.
//!
//! SDKs check only required members and minimums; max lengths, ranges, patterns and enums are the
//! server's job. AWS reports all violations at once:
//! `2 validation errors detected: Value '51' at 'maxResults' failed to satisfy constraint: Member must
//! have value less than or equal to 50; Value ...`. Paths are lowerCamel member names.

/// Collects constraint violations for one request.
#[derive(Debug, Default)]
pub struct Violations(Vec<String>);

fn lower_camel(path: &str) -> String {
    path.split('.')
        .map(|seg| {
            let mut c = seg.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, value: &str, path: &str, constraint: &str) {
        self.0.push(format!(
            "Value '{value}' at '{}' failed to satisfy constraint: {constraint}",
            lower_camel(path)
        ));
    }

    /// String length (characters) within `min..=max`.
    pub fn length(&mut self, path: &str, value: &str, min: usize, max: Option<usize>) {
        let n = value.chars().count();
        if n < min {
            self.push(
                value,
                path,
                &format!("Member must have length greater than or equal to {min}"),
            );
        } else if let Some(max) = max.filter(|m| n > *m) {
            self.push(
                value,
                path,
                &format!("Member must have length less than or equal to {max}"),
            );
        }
    }

    /// List length within `min..=max`; `shown` renders the list Java-style.
    pub fn count(&mut self, path: &str, shown: &str, n: usize, min: usize, max: Option<usize>) {
        if n < min {
            self.push(
                shown,
                path,
                &format!("Member must have length greater than or equal to {min}"),
            );
        } else if let Some(max) = max.filter(|m| n > *m) {
            self.push(
                shown,
                path,
                &format!("Member must have length less than or equal to {max}"),
            );
        }
    }

    /// Integer within `min..=max`.
    pub fn range(&mut self, path: &str, value: i64, min: i64, max: i64) {
        if value < min {
            self.push(
                &value.to_string(),
                path,
                &format!("Member must have value greater than or equal to {min}"),
            );
        } else if value > max {
            self.push(
                &value.to_string(),
                path,
                &format!("Member must have value less than or equal to {max}"),
            );
        }
    }

    /// A pattern check decided by the caller (`ok`), reported with the model's pattern text.
    pub fn pattern(&mut self, path: &str, value: &str, ok: bool, pattern: &str) {
        if !ok {
            self.push(
                value,
                path,
                &format!("Member must satisfy regular expression pattern: {pattern}"),
            );
        }
    }

    /// Enum membership.
    pub fn one_of(&mut self, path: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.push(
                value,
                path,
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    allowed.join(", ")
                ),
            );
        }
    }

    /// A required member that is absent (SDKs check this, raw callers may not).
    pub fn required(&mut self, path: &str, present: bool) {
        if !present {
            self.push("null", path, "Member must not be null");
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())`, or the full ValidationException message.
    pub fn finish(self) -> Result<(), String> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(format!("1 validation error detected: {}", self.0[0])),
            n => Err(format!(
                "{n} validation errors detected: {}",
                self.0.join("; ")
            )),
        }
    }
}

/// Renders a list the way AWS (Java) prints it in messages: `[a, b]`.
pub fn java_list<S: AsRef<str>>(items: &[S]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| s.as_ref())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_style_messages() {
        let mut v = Violations::new();
        v.range("MaxResults", 51, 1, 50);
        assert_eq!(
            v.finish().expect_err("violation"),
            "1 validation error detected: Value '51' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 50"
        );
        let mut v = Violations::new();
        v.count("Targets", "[a, b]", 6, 0, Some(5));
        v.length("Comment", &"c".repeat(101), 0, Some(100));
        let msg = v.finish().expect_err("violations");
        assert!(
            msg.starts_with("2 validation errors detected: Value '[a, b]' at 'targets'"),
            "{msg}"
        );
        assert!(msg.contains("; Value '"), "{msg}");
        assert!(Violations::new().finish().is_ok());
        let mut v = Violations::new();
        v.one_of("DocumentHashType", "Md5", &["Sha256", "Sha1"]);
        assert!(v.finish().expect_err("enum").contains("[Sha256, Sha1]"));
    }
}
