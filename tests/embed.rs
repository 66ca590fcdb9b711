//! Embeddings with the real ONNX model installed by scripts/setup: similarity sanity, the
//! content-addressed cache, and a clear error for a broken model path.

use crate::support::fixture_repo;
use codectx::ErrorKind;
use codectx::config::{ChunkConfig, EmbedConfig};
use codectx::embed::cache::{CachedEmbedder, EmbeddingCache};
use codectx::embed::local::LocalEmbedder;
use codectx::embed::{Embedder, cosine};
use codectx::model::Chunk;
use codectx::source::classify::detect_language;
use codectx::syntax::chunk_file;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

/// One model per test process: loading takes about a second.
fn model() -> &'static LocalEmbedder {
    static MODEL: OnceLock<LocalEmbedder> = OnceLock::new();
    MODEL.get_or_init(|| {
        LocalEmbedder::load(&EmbedConfig::default())
            .unwrap_or_else(|e| panic!("the model is installed by ./scripts/setup: {e}"))
    })
}

#[test]
fn descriptions_are_closest_to_the_code_they_describe() {
    let code = [
        "fn read_file(path: &Path) -> io::Result<String> { let mut f = File::open(path)?; let mut s = String::new(); f.read_to_string(&mut s)?; Ok(s) }",
        "def sort_by_price(items):\n    return sorted(items, key=lambda item: item.price)",
        "function sendEmail(to, subject, body) { return smtp.send({ to, subject, body }); }",
        "func (c *Cache) Evict(key string) { delete(c.entries, key) }",
    ];
    let queries = [
        "load the contents of a file",
        "order products by their cost",
        "deliver a mail message to a recipient",
        "remove an entry from the cache",
    ];
    let docs: Vec<String> = code.iter().map(|s| s.to_string()).collect();
    let vectors = model().embed_documents(&docs).unwrap();
    assert!(vectors.iter().all(|v| v.len() == model().dims()));
    for (i, q) in queries.iter().enumerate() {
        let qv = model().embed_query(q).unwrap();
        let scores: Vec<f32> = vectors.iter().map(|v| cosine(&qv, v)).collect();
        let best = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best, i, "{q:?} -> {scores:?}");
    }
}

#[test]
fn documents_embed_in_input_order_whatever_their_length() {
    let short = "fn a() {}".to_string();
    let long = format!("fn b() {{ {} }}", "let x = compute(1); ".repeat(30));
    let both = model()
        .embed_documents(&[long.clone(), short.clone()])
        .unwrap();
    let alone = model().embed_documents(&[short]).unwrap();
    assert!(
        cosine(&both[1], &alone[0]) > 0.999,
        "vectors follow their inputs"
    );
    assert!(cosine(&both[0], &alone[0]) < 0.999);
}

fn fixture_chunks() -> Vec<Chunk> {
    let repo = fixture_repo();
    let mut chunks = Vec::new();
    for entry in std::fs::read_dir(repo.path()).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let lang = detect_language(&name, &text);
        chunks.extend(chunk_file(&name, lang, &text, &ChunkConfig::default()).chunks);
    }
    chunks
}

#[test]
fn the_cache_turns_a_second_pass_into_zero_model_calls() {
    let data = tempfile::tempdir().unwrap();
    let chunks = fixture_chunks();
    let path = data.path().join("embeddings.redb");
    let first = {
        let cache = EmbeddingCache::open(&path).unwrap();
        let embedder = CachedEmbedder::new(model(), &cache);
        let vectors = embedder.embed_chunks(&chunks).unwrap();
        assert_eq!(
            embedder.stats.texts_embedded.load(Ordering::Relaxed),
            chunks.len() as u64
        );
        assert_eq!(cache.len().unwrap(), chunks.len() as u64);
        vectors
    };
    // Reopened (a new process would do the same): nothing reaches the model.
    let cache = EmbeddingCache::open(&path).unwrap();
    let embedder = CachedEmbedder::new(model(), &cache);
    let second = embedder.embed_chunks(&chunks).unwrap();
    assert_eq!(embedder.stats.model_calls.load(Ordering::Relaxed), 0);
    assert_eq!(embedder.stats.texts_embedded.load(Ordering::Relaxed), 0);
    assert_eq!(
        embedder.stats.cache_hits.load(Ordering::Relaxed),
        chunks.len() as u64
    );
    assert_eq!(first, second);

    // One changed chunk costs one text.
    let mut changed = chunks.clone();
    changed[0].content.push_str("\n// edited");
    let embedder = CachedEmbedder::new(model(), &cache);
    embedder.embed_chunks(&changed).unwrap();
    assert_eq!(embedder.stats.texts_embedded.load(Ordering::Relaxed), 1);
}

#[test]
fn a_broken_model_path_is_a_clear_error_naming_the_setup() {
    let config = EmbedConfig {
        model_dir: "/nonexistent/model".into(),
        ..EmbedConfig::default()
    };
    let err = match LocalEmbedder::load(&config) {
        Ok(_) => panic!("loading a missing model must fail"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/model") && msg.contains("scripts/setup"),
        "{msg}"
    );

    let dir = tempfile::tempdir().unwrap();
    let good = EmbedConfig::default().model_dir;
    for f in [
        "tokenizer.json",
        "config.json",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "codectx-model.json",
    ] {
        std::fs::copy(good.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("model.onnx"), b"not an onnx model").unwrap();
    let config = EmbedConfig {
        model_dir: dir.path().into(),
        ..EmbedConfig::default()
    };
    // The files are all there: the session starts (and fails) on the first text.
    let embedder = LocalEmbedder::load(&config).unwrap();
    let err = embedder.embed_query("anything").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("cannot load"), "{err}");
}

/// Progress that asks every pass to stop at once.
struct StopAtOnce;
impl codectx::ingest::Progress for StopAtOnce {
    fn cancelled(&self) -> bool {
        true
    }
}

#[test]
fn an_interrupted_embedding_pass_keeps_nothing_half_done_and_the_next_one_finishes() {
    let repo = fixture_repo();
    let (engine, _data) = crate::support::engine();
    let options = codectx::engine::IndexOptions {
        embed_before_commit: 0,
        ..Default::default()
    };
    engine
        .index_with(repo.path(), &options, &codectx::engine::NoProgress)
        .unwrap();
    let stopped = engine.embed(repo.path(), &StopAtOnce).unwrap();
    assert!(stopped.interrupted);
    assert_eq!(stopped.vectors, 0);
    assert!(stopped.coverage < 1.0);
    let done = engine
        .embed(repo.path(), &codectx::engine::NoProgress)
        .unwrap();
    assert!(!done.interrupted);
    assert_eq!(done.coverage, 1.0);
}

#[test]
fn fastembed_built_in_models_are_named_and_an_unknown_name_lists_the_known_ones() {
    let named = |name: &str| EmbedConfig {
        model_name: Some(name.to_string()),
        ..EmbedConfig::default()
    };
    // By enum name or hub id; nothing is downloaded until the first text.
    for name in ["BGESmallENV15", "xenova/bge-small-en-v1.5"] {
        let embedder = LocalEmbedder::load(&named(name)).unwrap();
        assert_eq!(embedder.model_id(), "Xenova/bge-small-en-v1.5");
        assert_eq!(embedder.dims(), 384);
    }
    let err = match LocalEmbedder::load(&named("no-such-model")) {
        Ok(_) => panic!("an unknown model name must fail"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-model") && msg.contains("AllMiniLML6V2"),
        "{msg}"
    );
}

/// A machine that cannot reach the hub: the index is lexical, search says why (the model
/// and the hub named), and nothing fails.
#[test]
fn a_built_in_model_that_cannot_be_downloaded_degrades_to_lexical() {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    // A port nothing listens on stands in for the hub.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ort = EmbedConfig::default().ort_dylib;
    let run = |args: &[&str]| {
        crate::support::codectx_command(data.path(), args)
            .env("CODECTX_EMBED_MODEL_NAME", "BGESmallENV15")
            .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
            .env("CODECTX_HOME", home.path())
            .env("ORT_DYLIB_PATH", &ort)
            .output()
            .unwrap()
    };
    let root = repo.path().to_str().unwrap();
    let out = run(&["index", root]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Xenova/bge-small-en-v1.5") && stderr.contains("hub"),
        "{stderr}"
    );
    let out = run(&["search", "read a file", "--repo", root, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!response["hits"].as_array().unwrap().is_empty());
    assert!(response["degraded"].is_string(), "{response}");
}

/// Vectors left behind by chunks that are gone (an index rebuilt under new chunk names, a
/// crash) must not make the counts look complete: the next pass embeds the chunk that has
/// no vector and drops the stale ones.
#[test]
fn stale_vectors_do_not_hide_a_chunk_that_has_none() {
    use codectx::engine::{IndexOptions, NoProgress};
    use codectx::index::vectors::{EmbeddedVectorStore, VectorPoint, VectorStore};
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let new_engine =
        || codectx::Engine::new(codectx::config::Config::with_data_dir(data.path())).unwrap();
    let engine = new_engine();
    engine
        .index_with(repo.path(), &IndexOptions::default(), &NoProgress)
        .unwrap();
    engine.embed(repo.path(), &NoProgress).unwrap();
    let root = repo.path().canonicalize().unwrap();
    let vectors_path = engine.repo_dir(&root).join("vectors.redb");
    drop(engine); // releases the store
    {
        let store =
            EmbeddedVectorStore::open(&vectors_path, model().model_id(), model().dims()).unwrap();
        let stale: Vec<VectorPoint> = (0..5)
            .map(|i| VectorPoint {
                id: format!("stale-{i}"),
                path: "gone.rs".to_string(),
                language: codectx::model::Language::Rust,
                vector: vec![0.05; model().dims()],
            })
            .collect();
        store.upsert(&stale).unwrap();
        store.flush().unwrap();
    }
    // A new function, committed without embedding it first (as a large change is).
    crate::support::write(
        repo.path(),
        "added.py",
        "def freshly_added_helper(x):\n    return x * 2\n",
    );
    crate::support::git(repo.path(), &["add", "-A"]);
    crate::support::git(repo.path(), &["commit", "-q", "-m", "add a helper"]);
    let engine = new_engine();
    let options = IndexOptions {
        embed_before_commit: 0,
        ..Default::default()
    };
    engine
        .index_with(repo.path(), &options, &NoProgress)
        .unwrap();
    let before = engine.status(repo.path()).unwrap();
    assert!(
        before.vectors > before.stored_chunks,
        "the counts must look complete for this test to mean anything: {} vectors, {} chunks",
        before.vectors,
        before.stored_chunks
    );
    let pass = engine
        .embed_behind(repo.path(), &NoProgress)
        .unwrap()
        .expect("a chunk without a vector must start a pass");
    assert_eq!(pass.removed, 5);
    assert_eq!(pass.embedded + pass.from_cache, 1);
    let after = engine.status(repo.path()).unwrap();
    assert_eq!(after.vectors, after.stored_chunks);
    assert!(
        engine
            .embed_behind(repo.path(), &NoProgress)
            .unwrap()
            .is_none()
    );
}
