//! Identifiers as validated newtypes: a value of these types is always well-formed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A command id: a 36-character lowercase UUID, as AWS issues them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandId(String);

impl CommandId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Accepts any 36-character string (the model's only constraint on CommandId).
    pub fn parse(s: &str) -> Option<Self> {
        (s.chars().count() == 36).then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A managed node id: `i-` + 8 or 17 word characters (EC2 form) or `mi-` + 17 (hybrid form, which
/// fleetrun issues), matching the model's pattern `(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(String);

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl InstanceId {
    /// A fresh hybrid node id: `mi-` + 17 lowercase hex characters.
    pub fn generate() -> Self {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let hex: String = (0..17)
            .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
            .collect();
        Self(format!("mi-{hex}"))
    }

    pub fn parse(s: &str) -> Option<Self> {
        let ok = if let Some(rest) = s.strip_prefix("mi-") {
            rest.len() == 17 && rest.chars().all(is_word)
        } else if let Some(rest) = s.strip_prefix("i-") {
            (rest.len() == 8 || rest.len() == 17) && rest.chars().all(is_word)
        } else {
            false
        };
        ok.then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An activation id: a lowercase UUID (`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActivationId(String);

impl ActivationId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn parse(s: &str) -> Option<Self> {
        let groups: Vec<&str> = s.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        let ok = groups.len() == 5
            && groups.iter().zip(lens).all(|(g, n)| {
                g.len() == n
                    && g.chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            });
        ok.then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ActivationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A random secret of `len` characters from an alphabet safe in headers and shells.
pub fn random_secret(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_follow_the_model_pattern() {
        assert!(InstanceId::parse("i-0123abcd").is_some());
        assert!(InstanceId::parse("i-0123456789abcdef0").is_some());
        assert!(InstanceId::parse("mi-0123456789abcdef0").is_some());
        assert!(InstanceId::parse("mi-0123abcd").is_none());
        assert!(InstanceId::parse("i-0123456789").is_none());
        assert!(InstanceId::parse("bad").is_none());
        assert!(InstanceId::parse("i-0123abc!").is_none());
        let g = InstanceId::generate();
        assert!(InstanceId::parse(g.as_str()).is_some(), "{g}");
        assert_eq!(g.as_str().len(), 20);
    }

    #[test]
    fn activation_ids_are_lowercase_uuids() {
        let a = ActivationId::generate();
        assert!(ActivationId::parse(a.as_str()).is_some());
        assert!(ActivationId::parse("E3A1C2B4-0000-0000-0000-000000000000").is_none());
        assert!(ActivationId::parse("nope").is_none());
    }

    #[test]
    fn command_ids_are_36_chars() {
        assert!(CommandId::parse(CommandId::generate().as_str()).is_some());
        assert!(CommandId::parse("short").is_none());
    }
}
