//! Reading the SigV4 `Authorization` header. v0 accepts any credentials (verification is a later
//! issue) but parses the header so the caller's access key id can be logged and a malformed header
//! never breaks a request.

/// The parts of `AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/ssm/aws4_request, SignedHeaders=…, Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

pub fn parse_authorization(value: &str) -> Option<Authorization> {
    let rest = value.trim().strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let scope: Vec<&str> = credential?.split('/').collect();
    if scope.len() != 5 {
        return None;
    }
    Some(Authorization {
        access_key_id: scope[0].to_string(),
        date: scope[1].to_string(),
        region: scope[2].to_string(),
        service: scope[3].to_string(),
        signed_headers: signed?.split(';').map(str::to_string).collect(),
        signature: signature?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_botocore_header() {
        let h = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/ssm/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=abcdef";
        let a = parse_authorization(h).expect("parse");
        assert_eq!(a.access_key_id, "AKIDEXAMPLE");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.service, "ssm");
        assert_eq!(a.signed_headers.len(), 4);
        assert_eq!(parse_authorization("Bearer x"), None);
        assert_eq!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=a/b, Signature=x"),
            None
        );
        assert_eq!(parse_authorization("AWS4-HMAC-SHA256 garbage"), None);
    }
}
