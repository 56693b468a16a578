//! A real HTTP receiver standing in for Slack (and, later, buyers' webhook
//! endpoints): an actix-web server on 127.0.0.1 that records every request
//! (path, raw body, headers, arrival time) and answers from a per-path script.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
}

impl Reply {
    pub fn ok() -> Self {
        Self::status(200, "ok")
    }

    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            retry_after: None,
        }
    }

    pub fn too_many(retry_after: &str) -> Self {
        Self {
            status: 429,
            body: "rate_limited".to_owned(),
            retry_after: Some(retry_after.to_owned()),
        }
    }
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub raw: Vec<u8>,
    pub headers: HashMap<String, String>,
    /// The status it was answered with.
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.raw).expect("a JSON body")
    }

    /// The notification id in a Slack message's context line (`ref <uuid>`),
    /// or `None` (digests carry `refs`).
    pub fn reference(&self) -> Option<String> {
        let text = self.json().to_string();
        let at = text.find("ref ")?;
        Some(text[at + 4..].chars().take(36).collect())
    }
}

#[derive(Default)]
struct State {
    scripts: HashMap<String, VecDeque<Reply>>,
    defaults: HashMap<String, Reply>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    /// Starts on a free port of 127.0.0.1; stops with the test's runtime.
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("address").port();
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::PayloadConfig::new(1 << 20))
                .default_service(web::to(answer))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listens")
        .run();
        actix_web::rt::spawn(server);
        Self {
            base: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Answers the next requests to `path` with `replies`, in order, then
    /// with the path's default (200 `ok` unless set).
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .lock()
            .unwrap()
            .scripts
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    pub fn set_default(&self, path: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .defaults
            .insert(path.to_owned(), reply);
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        self.state
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until `path` has received at least `n` requests.
    pub async fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: {} of {n} requests within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits `for_` and asserts `path` got exactly `n` requests by then.
    pub async fn still(&self, path: &str, n: usize, for_: Duration) {
        tokio::time::sleep(for_).await;
        assert_eq!(
            self.received(path).len(),
            n,
            "{path}: more requests than expected"
        );
    }
}

async fn answer(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let path = req.path().to_owned();
    let mut state = state.lock().unwrap();
    let reply = state
        .scripts
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .or_else(|| state.defaults.get(&path).cloned())
        .unwrap_or_else(Reply::ok);
    state.received.push(Received {
        path,
        raw: body.to_vec(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        answered: reply.status,
    });
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).expect("a status"));
    if let Some(retry_after) = &reply.retry_after {
        response.insert_header(("Retry-After", retry_after.as_str()));
    }
    response.body(reply.body)
}
