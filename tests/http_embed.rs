//! The OpenAI-compatible HTTP embedder against a loopback server that speaks the wire format.

use crate::support::write;
use codectx::config::{Config, HttpEmbedConfig};
use codectx::embed::Embedder;
use codectx::embed::http::HttpEmbedder;
use codectx::engine::NoProgress;
use codectx::retrieve::{SearchMode, SearchRequest};
use codectx::{Engine, ErrorKind};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DIMS: usize = 16;

/// A bag-of-words "model": each lowercase word adds 1 to one of 16 buckets.
fn bag_of_words(text: &str) -> Vec<f32> {
    let mut v = vec![0.0; DIMS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = word
            .to_lowercase()
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
        v[h as usize % DIMS] += 1.0;
    }
    v
}

#[derive(Default)]
struct Seen {
    bodies: Vec<serde_json::Value>,
    auth: Vec<String>,
}

struct Server {
    url: String,
    seen: Arc<Mutex<Seen>>,
    failing: Arc<AtomicBool>,
}

/// Serves `/v1/embeddings` on 127.0.0.1 until the test process ends.
fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/embeddings", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let failing: Arc<AtomicBool> = Arc::default();
    let (s, f) = (Arc::clone(&seen), Arc::clone(&failing));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (s, f) = (Arc::clone(&s), Arc::clone(&f));
            std::thread::spawn(move || serve(stream, &s, &f));
        }
    });
    Server { url, seen, failing }
}

fn serve(stream: std::net::TcpStream, seen: &Mutex<Seen>, failing: &AtomicBool) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut length = 0usize;
        let mut auth = String::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return; // connection closed
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("authorization:") {
                auth = l["authorization:".len()..].trim().to_string();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let (status, answer) = if failing.load(Ordering::SeqCst) {
            (
                "500 Internal Server Error",
                r#"{"error":"model crashed"}"#.to_string(),
            )
        } else {
            let data: Vec<serde_json::Value> = json["input"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .rev() // out of order on purpose: the client must sort by index
                .map(|(i, t)| serde_json::json!({"object": "embedding", "index": i, "embedding": bag_of_words(t.as_str().unwrap())}))
                .collect();
            (
                "200 OK",
                serde_json::json!({"object": "list", "data": data, "model": json["model"]})
                    .to_string(),
            )
        };
        {
            let mut s = seen.lock().unwrap();
            s.bodies.push(json);
            s.auth.push(auth);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn config(url: &str) -> HttpEmbedConfig {
    HttpEmbedConfig {
        url: url.to_string(),
        model: "test-embed".into(),
        api_key: Some("sekrit".into()),
        batch_size: 3,
        timeout: Duration::from_secs(10),
    }
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.py",
        "def parse_invoice(text):\n    return text.split(',')\n",
    );
    write(
        dir.path(),
        "b.py",
        "def render_chart(points):\n    return draw(points)\n",
    );
    dir
}

#[test]
fn speaks_the_openai_embeddings_wire_format() {
    let server = server();
    let embedder = HttpEmbedder::connect(config(&server.url)).unwrap();
    assert_eq!(embedder.dims(), DIMS);
    assert_eq!(embedder.model_id(), "http:test-embed");
    let texts: Vec<String> = ["one two", "three", "four five six", "seven", "eight"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let vectors = embedder.embed_documents(&texts).unwrap();
    for (t, v) in texts.iter().zip(&vectors) {
        assert_eq!(v, &bag_of_words(t), "answers follow their inputs");
    }
    let seen = server.seen.lock().unwrap();
    // The probe, then 5 texts in batches of 3.
    assert_eq!(seen.bodies.len(), 3);
    assert_eq!(seen.bodies[1]["model"], "test-embed");
    assert_eq!(
        seen.bodies[1]["input"],
        serde_json::json!(["one two", "three", "four five six"])
    );
    assert!(seen.auth.iter().all(|a| a == "Bearer sekrit"));
}

#[test]
fn engine_embeds_through_http_and_degrades_when_the_server_fails() {
    let server = server();
    let repo = repo();
    let data = tempfile::tempdir().unwrap();
    let embedder = HttpEmbedder::connect(config(&server.url)).unwrap();
    let engine =
        Engine::with_embedder(Config::with_data_dir(data.path()), Arc::new(embedder)).unwrap();
    engine.index(repo.path(), &NoProgress).unwrap();
    let report = engine.embed(repo.path(), &NoProgress).unwrap();
    assert_eq!(report.coverage, 1.0);
    assert_eq!(report.model, "http:test-embed");
    let mut r = SearchRequest::new("parse invoice");
    r.mode = SearchMode::Hybrid;
    let response = engine.search(repo.path(), &r).unwrap();
    assert!(response.degraded.is_none(), "{:?}", response.degraded);
    assert_eq!(response.hits[0].chunk.path, "a.py");
    assert_eq!(response.hits[0].dense_rank, Some(1));

    server.failing.store(true, Ordering::SeqCst);
    let response = engine.search(repo.path(), &r).unwrap();
    let reason = response.degraded.expect("degraded");
    assert!(
        reason.contains("answered 500") && reason.contains("model crashed"),
        "{reason}"
    );
    assert_eq!(response.hits[0].chunk.path, "a.py");
    write(repo.path(), "c.py", "def new_function():\n    pass\n");
    engine.index(repo.path(), &NoProgress).unwrap();
    let err = engine.embed(repo.path(), &NoProgress).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[test]
fn a_bad_url_or_a_dead_server_is_a_clear_error() {
    let err = HttpEmbedder::connect(config("ftp://example/v1/embeddings"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("ftp://example"), "{err}");
    // A port nothing listens on (bound, then released).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = HttpEmbedder::connect(config(&format!("http://127.0.0.1:{port}/v1/embeddings")))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}
