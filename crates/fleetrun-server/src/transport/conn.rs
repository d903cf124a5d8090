//! One connection's task: the TLS handshake (under a timeout), hyper's HTTP/1.1 loop over the
//! watched stream, the service that counts requests in flight and turns a handler's panic into a
//! typed 500, and the close requests from the accept loop (shed, idle, head timeout, drain).

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

use super::io::Guarded;
use super::registry::{CloseReason, ConnShared, Registered};
use crate::edge;
use crate::error::ApiError;
use crate::limits::Limits;

/// Everything a connection task needs besides its socket.
pub(crate) struct ConnContext {
    pub(crate) router: Router,
    pub(crate) limits: Arc<Limits>,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

pub(crate) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    conn: Arc<ConnShared>,
    registered: Registered,
    ctx: Arc<ConnContext>,
) {
    let _registered = registered;
    let _ = tcp.set_nodelay(true);
    match &ctx.tls {
        None => serve(tcp, peer, conn, &ctx).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(ctx.limits.tls_handshake_timeout, acceptor.accept(tcp));
            let tls = tokio::select! {
                r = handshake => r,
                _ = conn.close_requested() => return,
            };
            match tls {
                Ok(Ok(stream)) => serve(stream, peer, conn, &ctx).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve<S>(stream: S, peer: SocketAddr, conn: Arc<ConnShared>, ctx: &ConnContext)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = ConnService {
        router: ctx.router.clone(),
        conn: conn.clone(),
        peer,
    };
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        // A closed read side ends the connection: a stopped agent's parked long poll must not
        // take the next delivery (a truncated body is answered by the body timeout instead).
        .half_close(false)
        .max_headers(ctx.limits.max_headers)
        .max_header_size(ctx.limits.max_header_bytes)
        .max_buf_size((ctx.limits.max_header_bytes + 8192).max(16 * 1024));
    let io = TokioIo::new(Guarded::new(stream, conn.clone()));
    let mut http = builder.serve_connection(io, service);
    let mut draining = false;
    let mut cut_at: Option<tokio::time::Instant> = None;
    loop {
        let cut = async {
            match cut_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut http => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            reason = conn.close_requested(), if !draining => {
                if reason == CloseReason::HeadTimeout && conn.between_requests() {
                    let parts = http.into_parts();
                    answer_timeout(parts.io.into_inner().into_inner()).await;
                    return;
                }
                // hyper closes an idle connection at once, and otherwise after the response in
                // flight (or the last bytes of one) is out.
                Pin::new(&mut http).graceful_shutdown();
                draining = true;
                if reason != CloseReason::Drain {
                    cut_at = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
            }
            _ = cut => return,
        }
    }
}

/// How long a shed or idle connection may take to close gracefully before it is cut (a client
/// that stopped reading its last response).
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Tells a client whose request head never finished why the connection closes.
async fn answer_timeout<S: AsyncWrite + Unpin>(mut stream: S) {
    let err = ApiError::RequestTimeout(
        "The request headers did not arrive in time; the connection is closed.".into(),
    );
    let bytes = edge::raw_error(&err);
    let write = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), write).await;
}

/// The per-connection service: counts the request in flight until its response body is dropped,
/// hands the connection's peer address to handlers (`ConnectInfo`), and catches panics.
#[derive(Clone)]
struct ConnService {
    router: Router,
    conn: Arc<ConnShared>,
    peer: SocketAddr,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<GuardedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<GuardedBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let guard = InFlight::start(self.conn.clone());
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let handled = self.router.clone().oneshot(req);
        Box::pin(async move {
            let response = match CatchUnwind(Box::pin(handled)).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(panic) => {
                    tracing::error!(panic = %panic_text(&*panic), "a request handler panicked");
                    edge::error_response(ApiError::Internal("handler panicked".into()))
                }
            };
            Ok(response.map(|body| GuardedBody {
                body,
                _guard: guard,
            }))
        })
    }
}

fn panic_text(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Polls a future, turning a panic inside it into an `Err`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Marks a request in flight for as long as it lives.
struct InFlight(Arc<ConnShared>);

impl InFlight {
    fn start(conn: Arc<ConnShared>) -> Self {
        conn.request_started();
        Self(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its request in flight until hyper has taken all of it.
struct GuardedBody {
    body: Body,
    _guard: InFlight,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
