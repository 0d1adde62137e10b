//! Render's log stream (`GET /logs/subscribe`): a WebSocket on which every new log line of
//! the asked resources arrives as one JSON frame. The handshake carries the bearer key in its
//! header (never in the URL) and runs over the caller's rustls configuration, within a
//! deadline; a frame over 1 MiB ends the stream with an error. `mxwarden render logs --follow`
//! reads it.

use super::client::RenderError;
use super::model::LogLine;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use url::Url;

/// Largest frame or message read.
pub const FRAME_LIMIT: usize = 1 << 20;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open log stream.
pub struct LogStream {
    ws: tokio_tungstenite::WebSocketStream<Box<dyn Io>>,
}

impl std::fmt::Debug for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStream")
    }
}

impl LogStream {
    /// The next line; `None` when Render closed the stream.
    pub async fn next(&mut self) -> Option<Result<LogLine, RenderError>> {
        loop {
            let frame = self.ws.next().await?;
            let bytes = match frame {
                Ok(Message::Text(t)) => t.as_bytes().to_vec(),
                Ok(Message::Binary(b)) => b.to_vec(),
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(e) => return Some(Err(RenderError::Transport(format!("the log stream broke: {e}")))),
            };
            return Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| RenderError::Malformed { path: "logs/subscribe".into(), why: e.to_string() }),
            );
        }
    }
}

/// Opens the stream at `url` (`http(s)://…/logs/subscribe?…`, turned into `ws(s)://`).
pub(crate) async fn open(
    url: &Url,
    key: &str,
    deadline: Duration,
    tls: Arc<rustls::ClientConfig>,
) -> Result<LogStream, RenderError> {
    let path = "logs/subscribe".to_string();
    let timeout = || RenderError::Timeout { path: path.clone(), deadline };
    let host = url.host_str().ok_or_else(|| RenderError::Transport(format!("{url} has no host")))?.to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let mut ws_url = url.clone();
    let secure = url.scheme() == "https";
    let _ = ws_url.set_scheme(if secure { "wss" } else { "ws" });
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| RenderError::Malformed { path: path.clone(), why: e.to_string() })?;
    let mut auth =
        tungstenite::http::HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| RenderError::Unauthorized)?;
    auth.set_sensitive(true);
    request.headers_mut().insert(tungstenite::http::header::AUTHORIZATION, auth);
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| RenderError::Transport(format!("cannot connect to {host}:{port}: {e}")))?;
        let io: Box<dyn Io> = if secure {
            let name = rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|e| RenderError::Transport(format!("{host}: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| RenderError::Transport(format!("TLS with {host}: {e}")))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(FRAME_LIMIT))
            .max_frame_size(Some(FRAME_LIMIT));
        match tokio_tungstenite::client_async_with_config(request, io, Some(config)).await {
            Ok((ws, _)) => Ok(LogStream { ws }),
            Err(tungstenite::Error::Http(response)) => Err(match response.status().as_u16() {
                401 => RenderError::Unauthorized,
                404 => RenderError::NotFound { what: "log stream", id: path.clone() },
                status => {
                    RenderError::Refused { status, path: path.clone(), message: "the log stream was refused".into() }
                }
            }),
            Err(e) => Err(RenderError::Transport(format!("the log stream's handshake failed: {e}"))),
        }
    };
    tokio::time::timeout(deadline, connect).await.map_err(|_| timeout())?
}
