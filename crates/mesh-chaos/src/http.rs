//! A small HTTP client for a node's API inside its host: one `GET` per connection, opened
//! from inside the namespace (the API listens on the host's own loopback), bounded in time and
//! in the size of the answer.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

use crate::netns::Namespace;

/// The largest answer read (the API's answers for a few assets are a few KiB).
const MAX_BODY: usize = 4 << 20;

/// `GET path` on `addr` inside `namespace`: the status and the body, or why not.
///
/// # Errors
/// A description of what failed: connecting, the exchange, or the deadline.
pub async fn get(
    namespace: &Namespace,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    tokio::time::timeout(timeout, exchange(namespace, addr, path, timeout))
        .await
        .unwrap_or_else(|_| Err(format!("GET {path}: no answer within {timeout:?}")))
}

async fn exchange(
    namespace: &Namespace,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let stream = namespace.connect(addr, timeout).await.map_err(|err| format!("connect {addr}: {err}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|err| err.to_string())?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|err| err.to_string())?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|err| format!("GET {path}: {err}"))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|err| format!("GET {path}: body: {err}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
    .await;
    driver.abort();
    result
}

/// `GET path` as JSON.
///
/// # Errors
/// As [`get`], or when the body is not JSON.
pub async fn get_json(
    namespace: &Namespace,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, serde_json::Value), String> {
    let (status, body) = get(namespace, addr, path, timeout).await?;
    let value = serde_json::from_str(&body).map_err(|err| format!("GET {path}: not JSON ({err})"))?;
    Ok((status, value))
}
