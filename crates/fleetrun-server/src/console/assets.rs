//! The console's three files, compiled into the binary (no CDN, no build step): served with an
//! ETag of their content and `Cache-Control: no-cache`, so a browser revalidates each load and a
//! new binary's files are picked up at once.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const SHELL: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/console.js");
const STYLE: &str = include_str!("web/console.css");

/// One asset with its ETag, computed once.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Self {
        Self {
            body,
            content_type,
            etag: OnceLock::new(),
        }
    }

    fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.body.as_bytes());
            format!("\"{}\"", hex::encode(&digest[..12]))
        })
    }

    fn serve(&self, headers: &HeaderMap) -> Response {
        let etag = self.etag();
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
        let mut resp = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(self.content_type),
                )],
                self.body,
            )
                .into_response()
        };
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Ok(v) = HeaderValue::from_str(etag) {
            h.insert(header::ETAG, v);
        }
        resp
    }
}

static SHELL_ASSET: Asset = Asset::new(SHELL, "text/html; charset=utf-8");
static SCRIPT_ASSET: Asset = Asset::new(SCRIPT, "text/javascript; charset=utf-8");
static STYLE_ASSET: Asset = Asset::new(STYLE, "text/css; charset=utf-8");

pub(super) async fn shell(headers: HeaderMap) -> Response {
    SHELL_ASSET.serve(&headers)
}

pub(super) async fn script(headers: HeaderMap) -> Response {
    SCRIPT_ASSET.serve(&headers)
}

pub(super) async fn style(headers: HeaderMap) -> Response {
    STYLE_ASSET.serve(&headers)
}
