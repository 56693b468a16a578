//! A Server-Sent Events client for the tests: parses the stream as a browser's
//! `EventSource` does (fields `id`, `event`, `data`, `retry`; comments) and
//! hands each item over a channel, so tests can wait for them with a deadline.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Event {
        id: Option<i64>,
        event: String,
        data: String,
    },
    Comment(String),
    Retry(u64),
    /// The server ended the response.
    End,
}

impl Item {
    /// An `activity` event's id and parsed data.
    pub fn activity(&self) -> Option<(i64, Value)> {
        match self {
            Item::Event {
                id: Some(id),
                event,
                data,
            } if event == "activity" => Some((*id, serde_json::from_str(data).ok()?)),
            _ => None,
        }
    }
}

pub struct Stream {
    pub headers: reqwest::header::HeaderMap,
    items: mpsc::UnboundedReceiver<Item>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Closes the connection, as a browser tab going away does.
        self.task.abort();
    }
}

/// A client with no overall timeout (streams are long).
pub fn client() -> reqwest::Client {
    overseer::adapters::slack::install_tls_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Opens `url` with `bearer` and, when given, `Last-Event-ID`. Returns the
/// status and body of a refusal.
pub async fn open(
    url: &str,
    bearer: Option<&str>,
    last_event_id: Option<i64>,
) -> Result<Stream, (u16, Value)> {
    let mut request = client().get(url).header("accept", "text/event-stream");
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.json().await.unwrap_or(Value::Null);
        return Err((status, body));
    }
    let headers = response.headers().clone();
    let (tx, items) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                for item in parse_block(&block) {
                    if tx.send(item).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Item::End);
    });
    Ok(Stream {
        headers,
        items,
        task,
    })
}

fn parse_block(block: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let (mut id, mut event, mut data) = (None, None::<String>, Vec::new());
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            items.push(Item::Comment(comment.trim().to_owned()));
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push(v.to_owned());
        } else if let Some(v) = line.strip_prefix("retry: ") {
            items.push(Item::Retry(v.parse().unwrap()));
        } else if !line.is_empty() {
            panic!("unexpected SSE line {line:?}");
        }
    }
    if !data.is_empty() || event.is_some() {
        items.push(Item::Event {
            id,
            event: event.unwrap_or_else(|| "message".into()),
            data: data.join("\n"),
        });
    }
    items
}

impl Stream {
    /// The next item, or `None` if none comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Item> {
        tokio::time::timeout(within, self.items.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next event (not a comment or `retry`), or `None` after `within`.
    pub async fn next_event(&mut self, within: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Item::Comment(_) | Item::Retry(_) => continue,
                other => return Some(other),
            }
        }
    }

    /// `activity` events until `n` have arrived or `within` has passed.
    pub async fn activities(&mut self, n: usize, within: Duration) -> Vec<(i64, Value)> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(item) => match item.activity() {
                    Some(a) => out.push(a),
                    None => panic!("unexpected {item:?} after {} activities", out.len()),
                },
                None => break,
            }
        }
        out
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

/// Follows a stream as a browser's `EventSource` does: when the stream ends
/// (or says `resync`), reconnects with the last id it saw. Collects the
/// `activity` events whose `operation` is `operation` until `n` distinct
/// `log_id`s have arrived; returns every such event in arrival order (a
/// duplicate would appear twice) and how many times it reconnected.
pub async fn follow(
    url: &str,
    bearer: &str,
    mut stream: Stream,
    mut last_id: Option<i64>,
    operation: &str,
    n: usize,
    within: Duration,
) -> (Vec<(i64, Value)>, usize) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = std::collections::HashSet::new();
    let mut events = Vec::new();
    let mut reconnects = 0;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if seen.len() >= n || left.is_zero() {
            return (events, reconnects);
        }
        match stream.next_event(left).await {
            Some(item @ Item::Event { .. }) => {
                if let Some((id, data)) = item.activity() {
                    last_id = Some(id);
                    if data["operation"] == operation {
                        seen.insert(data["log_id"].as_str().unwrap().to_owned());
                        events.push((id, data));
                    }
                } else if matches!(&item, Item::Event { event, .. } if event == "resync") {
                    // The server will close; reconnect at once below.
                    drop(stream);
                    stream = reconnect(url, bearer, last_id, &mut reconnects).await;
                }
            }
            Some(Item::End) => {
                stream = reconnect(url, bearer, last_id, &mut reconnects).await;
            }
            Some(_) => {}
            None => return (events, reconnects),
        }
    }
}

async fn reconnect(url: &str, bearer: &str, last_id: Option<i64>, count: &mut usize) -> Stream {
    *count += 1;
    for _ in 0..100 {
        match open(url, Some(bearer), last_id).await {
            Ok(stream) => return stream,
            // The hub restarting, or the slot of the old connection not
            // yet given back: try again shortly, as EventSource would.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("could not reconnect to {url}");
}

#[test]
fn blocks_parse_as_event_source_does() {
    assert_eq!(
        parse_block("id: 7\nevent: activity\ndata: {\"a\":1}\n\n"),
        vec![Item::Event {
            id: Some(7),
            event: "activity".into(),
            data: "{\"a\":1}".into()
        }]
    );
    assert_eq!(
        parse_block(": keep-alive\n\n"),
        vec![Item::Comment("keep-alive".into())]
    );
    assert_eq!(parse_block("retry: 3000\n\n"), vec![Item::Retry(3000)]);
}
