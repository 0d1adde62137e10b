//! The Matrix rooms' check at start: mxwarden does not do end-to-end encryption, so a
//! receiver's room or the control room with `m.room.encryption` set refuses the start, with a
//! message saying so and what to do. A homeserver that cannot be asked now (it is down: that
//! is what mxwarden is for) does not stop monitoring; the receiver checks again before its
//! first message, and the control room's follower before it reads. A reload naming an
//! encrypted room is refused like an invalid file: the running config stays.

use crate::config::Config;
use crate::notify::Receiver;
use crate::probe::matrix::{MatrixClient, encrypted_refusal};
use std::time::Duration;

/// How long each room's check may take.
const ASK: Duration = Duration::from_secs(10);

/// `Err` with the reason when a configured room is encrypted.
pub(super) async fn refuse_encrypted(config: &Config, http: &reqwest::Client) -> Result<(), String> {
    let mut rooms = Vec::new();
    if let Some(alerting) = &config.alerting {
        for (name, receiver) in &alerting.receivers {
            if let Receiver::Matrix(m) = receiver {
                let client = MatrixClient::new(m.homeserver.clone(), m.token.clone(), http.clone());
                rooms.push((format!("receiver {name}:"), m.room.clone(), client));
            }
        }
    }
    if let Some(c) = &config.control {
        let client = MatrixClient::new(c.homeserver.clone(), c.token.clone(), http.clone());
        rooms.push(("the control".to_string(), c.room.clone(), client));
    }
    for (what, room, client) in rooms {
        let shown = crate::text::escape_controls(&room).into_owned();
        let asked = async {
            let id = client.join(&room, ASK).await?;
            client.encrypted(&id, ASK).await
        };
        match asked.await {
            Ok(true) => return Err(encrypted_refusal(&what, &shown)),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(room = %shown, error = %e, "Could not check whether a Matrix room is encrypted; checking again before using it.")
            }
        }
    }
    Ok(())
}

/// The config at `path` for a reload: valid, and none of its rooms encrypted (a reload that
/// names an encrypted room is refused like an invalid file; the running config stays).
pub(super) async fn load_for_reload(path: &std::path::Path) -> Result<Config, String> {
    let config = crate::config::load(path).map_err(|e| e.to_string())?;
    let http = crate::dispatch::http_client()?;
    refuse_encrypted(&config, &http).await?;
    Ok(config)
}
