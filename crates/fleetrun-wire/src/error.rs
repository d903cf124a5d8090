//! The awsJson1_1 error body: `{"__type": "<Code>", "Message": "<text>"}`.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody<'a> {
    #[serde(rename = "__type")]
    pub code: &'a str,
    #[serde(rename = "Message")]
    pub message: &'a str,
}

/// The error body as JSON text.
pub fn error_json(code: &str, message: &str) -> String {
    serde_json::to_string(&ErrorBody { code, message })
        .unwrap_or_else(|_| format!("{{\"__type\":\"{code}\"}}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn body_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&super::error_json("InvalidCommandId", "nope")).expect("json");
        assert_eq!(v["__type"], "InvalidCommandId");
        assert_eq!(v["Message"], "nope");
    }
}
