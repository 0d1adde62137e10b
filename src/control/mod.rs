//! The ops room as a control room (`control:`): operators run mxwarden from the room where it
//! pages them. `command` parses a message into a command (pure, table-tested); `actions`
//! holds the command table and what each command does; `follower` long-polls `/sync` with a
//! `since` token kept in the store, obeys the allowed users only, audits every accepted
//! command (`mxwarden audit`) and answers in a thread on it. See `docs/control-room.md`.

mod actions;
pub(crate) mod command;
mod follower;

pub(crate) use follower::{Follower, Parts};
