//! The email receiver: SMTP through lettre with STARTTLS, implicit TLS, or plain for a local
//! relay; a text and an HTML part; a `Message-ID` derived from the outbox row so mail clients
//! can fold a retried duplicate. lettre's own classification decides transient vs permanent.
//! Control characters never reach the mail: the subject is one escaped line, the bodies keep
//! only their line breaks (`crate::text`).

use super::{Notification, SendError};
use crate::text::{escape_controls, escape_controls_in_prose};
use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// STARTTLS, required.
    StartTls,
    /// TLS from the first byte (`smtps://`, port 465).
    Implicit,
    /// None: only for a relay on the same host or network.
    None,
}

/// An SMTP server and the addresses to use.
#[derive(Debug, Clone)]
pub struct EmailReceiver {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Protection.
    pub tls: SmtpTls,
    /// Sender.
    pub from: Mailbox,
    /// Recipients.
    pub to: Vec<Mailbox>,
    /// Login.
    pub username: Option<String>,
    /// Password.
    pub password: Option<SecretString>,
}

impl EmailReceiver {
    pub(crate) fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let builder = match self.tls {
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host),
            SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)),
        }
        .map_err(|e| SendError::Permanent(format!("SMTP server {}: {e}", self.host)))?;
        let mut builder = builder.port(self.port).timeout(Some(Duration::from_secs(30)));
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose_secret().to_string()));
        }
        Ok(builder.build())
    }

    /// Sends `n`; `delivery` (the outbox row id) makes the Message-ID.
    pub(crate) async fn send(&self, delivery: &str, n: &Notification) -> Result<(), SendError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(escape_controls(&n.title))
            .message_id(Some(format!("<mxwarden-{delivery}@{}>", self.from.email.domain())))
            .header(header::MIME_VERSION_1_0);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(
                escape_controls_in_prose(&n.text).into_owned(),
                escape_controls_in_prose(&n.html).into_owned(),
            ))
            .map_err(|e| SendError::Permanent(format!("cannot build the email: {e}")))?;
        self.transport()?.send(message).await.map(|_| ()).map_err(|e| {
            let why = crate::probe::explain_tls(&e, &self.host).unwrap_or_else(|| e.to_string());
            let text = format!("SMTP {}:{}: {why}", self.host, self.port);
            if e.is_permanent() { SendError::Permanent(text) } else { SendError::transient(text) }
        })
    }
}
