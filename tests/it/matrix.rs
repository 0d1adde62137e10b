//! A Matrix client for assertions: create a room and read its messages back, through the
//! client-server API of the harness's real Synapse.

use crate::support::fakes;
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Creates a private room; returns its id.
pub fn create_room(base: &str, token: &str, name: &str) -> String {
    fakes::runtime().block_on(async {
        let r: Value = client()
            .post(format!("{base}/_matrix/client/v3/createRoom"))
            .bearer_auth(token)
            .json(&json!({"name": name, "preset": "private_chat"}))
            .send()
            .await
            .expect("createRoom")
            .json()
            .await
            .expect("createRoom JSON");
        r["room_id"].as_str().unwrap_or_else(|| panic!("no room_id in {r}")).to_string()
    })
}

/// The room's `m.room.message` events, oldest first.
pub fn messages(base: &str, token: &str, room: &str) -> Vec<Value> {
    fakes::runtime().block_on(async {
        let mut url = url::Url::parse(base).unwrap();
        url.path_segments_mut().unwrap().extend(["_matrix", "client", "v3", "rooms", room, "messages"]);
        url.query_pairs_mut().append_pair("dir", "b").append_pair("limit", "100");
        let r: Value =
            client().get(url).bearer_auth(token).send().await.expect("messages").json().await.expect("messages JSON");
        let mut events: Vec<Value> = r["chunk"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["type"] == "m.room.message")
            .collect();
        events.reverse();
        events
    })
}
