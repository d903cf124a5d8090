//! Wake-ups across replicas on one database: `NOTIFY fleetrun_wake` after a change committed, and
//! one `LISTEN` connection per replica that hands the other replicas' wake-ups to its long polls.
//!
//! Why NOTIFY is sent on its own and not inside the data transaction: PostgreSQL serialises
//! every notifying commit on one global lock, so a NOTIFY inside each claim or finish would make
//! all of them queue on it under load. Published after the commit, from a batch (the server hands
//! over everything that piled up while the previous publish ran, ARCHITECTURE.md), there is one
//! small notifying transaction per batch instead of one per write.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use fleetrun_core::error::CoreResult;
use fleetrun_core::ids::InstanceId;
use fleetrun_core::store::{Wake, WakeBus};
use fleetrun_core::CoreError;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, NoTls, Socket};

use super::tls::Connector;

/// The channel every replica listens on.
const CHANNEL: &str = "fleetrun_wake";
/// NOTIFY payloads must be shorter than 8000 bytes; node ids are 19 characters.
const MAX_PAYLOAD: usize = 7_800;
/// Longest wait between attempts to get the listening connection back.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A replica's end of the bus. Each payload starts with the sender's id, so a replica ignores its
/// own wake-ups (it has applied them locally already).
pub struct PgWakeBus {
    pool: Pool,
    config: tokio_postgres::Config,
    connector: Connector,
    replica: String,
}

impl PgWakeBus {
    pub(crate) fn new(
        pool: Pool,
        config: tokio_postgres::Config,
        connector: Connector,
    ) -> PgWakeBus {
        PgWakeBus {
            pool,
            config,
            connector,
            replica: fleetrun_core::ids::random_secret(12),
        }
    }
}

/// Payloads of at most [`MAX_PAYLOAD`] bytes: `<replica> <node>,<node>,…`.
fn payloads(replica: &str, nodes: &[InstanceId]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for node in nodes {
        if !current.is_empty() && current.len() + node.as_str().len() + 1 > MAX_PAYLOAD {
            out.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(replica);
            current.push(' ');
        } else {
            current.push(',');
        }
        current.push_str(node.as_str());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The nodes of a payload another replica sent; `None` for our own or an unreadable one.
fn parse_payload(replica: &str, payload: &str) -> Option<Vec<InstanceId>> {
    let (sender, nodes) = payload.split_once(' ')?;
    if sender == replica {
        return None;
    }
    Some(nodes.split(',').filter_map(InstanceId::parse).collect())
}

#[async_trait]
impl WakeBus for PgWakeBus {
    async fn publish(&self, nodes: &[InstanceId]) -> CoreResult<()> {
        if nodes.is_empty() {
            return Ok(());
        }
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| CoreError::Store(format!("postgres: wake-up not sent: {e}")))?;
        for payload in payloads(&self.replica, nodes) {
            client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                .await
                .map_err(|e| CoreError::Store(format!("postgres: wake-up not sent: {e}")))?;
        }
        Ok(())
    }

    fn subscribe(&self, sink: Arc<dyn Fn(Wake) + Send + Sync>) {
        let config = self.config.clone();
        let connector = self.connector.clone();
        let replica = self.replica.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let session = match &connector {
                    Connector::Plain => listen(&config, NoTls, &replica, &sink).await,
                    Connector::Tls(tls) => listen(&config, tls.clone(), &replica, &sink).await,
                };
                match session {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                            "wake-ups from other replicas interrupted");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
    }
}

/// One listening session: connects, LISTENs, tells the sink to look at everything (wake-ups
/// sent while no session listened are lost), then delivers notifications until the connection
/// ends.
async fn listen<T>(
    config: &tokio_postgres::Config,
    tls: T,
    replica: &str,
    sink: &Arc<dyn Fn(Wake) + Send + Sync>,
) -> Result<(), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    let driving = {
        let sink = sink.clone();
        let replica = replica.to_owned();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if let Some(nodes) = parse_payload(&replica, n.payload()) {
                            sink(Wake::Nodes(nodes));
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                }
            }
        })
    };
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    sink(Wake::Everyone);
    tracing::debug!("listening for wake-ups from other replicas");
    let ended = driving.await;
    drop(client);
    ended.unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_under_the_limit_and_skip_our_own() {
        let nodes: Vec<InstanceId> = (0..2_000u32)
            .map(|n| InstanceId::parse(&format!("mi-{n:017x}")).expect("id"))
            .collect();
        let sent = payloads("replica-a", &nodes);
        assert!(sent.len() > 1, "2,000 ids do not fit one payload");
        let mut back = Vec::new();
        for p in &sent {
            assert!(p.len() < 8_000, "{}", p.len());
            assert_eq!(parse_payload("replica-a", p), None, "our own");
            back.extend(parse_payload("replica-b", p).expect("theirs"));
        }
        assert_eq!(back, nodes);
        assert!(payloads("replica-a", &[]).is_empty());
    }
}
