//! Raw HTTP/1.1 over TCP for requests no client library would send, SigV4-signed when they must
//! get past authentication, and a reader for one response.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// The `__type` of a typed awsJson error: content type, request id, error-type header and a
    /// JSON body with `__type` and `Message`. `None` when any of that is missing.
    pub fn typed_code(&self) -> Option<String> {
        let code = self.header("x-amzn-errortype")?;
        let typed = self.header("content-type")? == "application/x-amz-json-1.1"
            && self
                .header("x-amzn-requestid")
                .is_some_and(|v| !v.is_empty());
        if !typed {
            return None;
        }
        if self.body.is_empty() && self.header("content-length").is_some() {
            // A HEAD answer: the body was withheld, the headers say what it is.
            return Some(code.to_string());
        }
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["Message"].as_str()?;
        let body_code = v["__type"].as_str()?;
        body_code
            .eq_ignore_ascii_case(code)
            .then(|| body_code.to_string())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, deadline: tokio::time::Instant) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
        .await
        .ok()?
        .ok()?;
    (n > 0).then(|| buf.extend_from_slice(&chunk[..n]))
}

/// Reads one Content-Length-framed response (head only for `head_only`); `None` when the
/// connection closes or nothing arrives within `wait`.
pub async fn read_answer(s: &mut TcpStream, wait: Duration, head_only: bool) -> Option<Answer> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        fill(s, &mut buf, deadline).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.get(9..12)?.parse().ok()?;
    let mut answer = Answer {
        status,
        head,
        body: Vec::new(),
    };
    let len: usize = if head_only {
        0
    } else {
        answer.header("content-length")?.parse().ok()?
    };
    while buf.len() < head_end + len {
        fill(s, &mut buf, deadline).await?;
    }
    answer.body = buf[head_end..head_end + len].to_vec();
    Some(answer)
}

/// Sends `request` on a fresh connection and reads the answer.
pub async fn exchange(
    addr: std::net::SocketAddr,
    request: &[u8],
    wait: Duration,
) -> Option<Answer> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(request).await.ok()?;
    let head_only = request.starts_with(b"HEAD ");
    read_answer(&mut s, wait, head_only).await
}

/// An HTTP/1.1 request with the given raw parts (a `content-length` is added for `body`).
pub fn request(method: &str, path: &[u8], headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: fleetrun\r\n");
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// `POST /` signed with `key` (SigV4, region us-east-1, service ssm) as an SDK would sign it,
/// with `target` as X-Amz-Target (none when `None`).
pub fn signed(host: &str, key: &(String, String), target: Option<&[u8]>, body: &[u8]) -> Vec<u8> {
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("host", host.as_bytes()),
        ("content-type", b"application/x-amz-json-1.1"),
    ];
    if let Some(t) = target {
        headers.push(("x-amz-target", t));
    }
    let req = fleetrun_sigv4::HttpRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let creds = fleetrun_sigv4::Credentials {
        access_key_id: &key.0,
        secret_access_key: &key.1,
        session_token: None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let added = fleetrun_sigv4::sign(&req, &creds, "us-east-1", "ssm", now);
    let mut out = b"POST / HTTP/1.1\r\n".to_vec();
    for (n, v) in headers
        .iter()
        .copied()
        .chain(added.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
    {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}
