//! The local embedder: an ONNX model run by fastembed on ONNX Runtime, loaded from files the
//! set-up script installed. Nothing is downloaded, ever. The files are checked when the
//! embedder is made; the ONNX session (a few hundred ms) starts on the first text to embed,
//! so a run whose texts all come from the cache never pays for it.

use super::Embedder;
use crate::config::EmbedConfig;
use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// What `scripts/setup` writes next to a model: `codectx-model.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelManifest {
    pub id: String,
    pub dims: usize,
    pub max_tokens: usize,
    pub pooling: String,
    #[serde(default)]
    pub query_prefix: String,
}

/// fastembed's `TextEmbedding` behind a mutex (it embeds through `&mut self`), started on
/// first use.
pub struct LocalEmbedder {
    manifest: ModelManifest,
    config: EmbedConfig,
    pooling: fastembed::Pooling,
    model: OnceLock<Result<Mutex<fastembed::TextEmbedding>, String>>,
    /// Query sessions, one intra-op thread each, one per core: a query is a few dozen
    /// tokens, so concurrent queries run side by side instead of queueing on one
    /// all-cores session whose idle threads spin.
    queries: OnceLock<Result<Vec<Mutex<fastembed::TextEmbedding>>, String>>,
    next_query: std::sync::atomic::AtomicUsize,
    batch_size: usize,
}

/// The files a model directory must hold.
const MODEL_FILES: &[&str] = &[
    "model.onnx",
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

const SETUP_HINT: &str = "run ./scripts/setup to install it";

/// ONNX Runtime allows one environment per process: it is made once and shared.
fn environment(dylib: &Path) -> Result<ort::environment::Environment> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        if !dylib.is_file() {
            return Err(format!(
                "ONNX Runtime library {} not found; {SETUP_HINT} (or set ORT_DYLIB_PATH)",
                dylib.display()
            ));
        }
        ort::init_from(dylib)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", dylib.display()))?
            .with_name("codectx")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    })
    .clone()
    .map_err(Error::Unavailable)
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| {
        Error::Unavailable(format!(
            "embedding model file {} cannot be read ({e}); {SETUP_HINT} (or set CODECTX_MODEL_DIR)",
            path.display()
        ))
    })
}

impl LocalEmbedder {
    /// Checks the model in `config.model_dir` and the runtime at `config.ort_dylib`; the
    /// session starts on first use. A missing runtime or model is one clear `Unavailable`
    /// error naming the set-up command.
    pub fn load(config: &EmbedConfig) -> Result<LocalEmbedder> {
        if let Some(name) = &config.model_name {
            return LocalEmbedder::builtin(config, name);
        }
        let dir = &config.model_dir;
        let manifest: ModelManifest = serde_json::from_slice(&read(dir, "codectx-model.json")?)
            .map_err(|e| Error::Corrupt(format!("{}/codectx-model.json: {e}", dir.display())))?;
        let pooling = match manifest.pooling.as_str() {
            "mean" => fastembed::Pooling::Mean,
            "cls" => fastembed::Pooling::Cls,
            other => {
                return Err(Error::Corrupt(format!(
                    "{}/codectx-model.json: unknown pooling {other:?} (mean or cls)",
                    dir.display()
                )));
            }
        };
        for name in MODEL_FILES {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(Error::Unavailable(format!(
                    "embedding model file {} is missing; {SETUP_HINT} (or set CODECTX_MODEL_DIR)",
                    path.display()
                )));
            }
        }
        if !config.ort_dylib.is_file() {
            return Err(Error::Unavailable(format!(
                "ONNX Runtime library {} not found; {SETUP_HINT} (or set ORT_DYLIB_PATH)",
                config.ort_dylib.display()
            )));
        }
        Ok(LocalEmbedder {
            manifest,
            config: config.clone(),
            pooling,
            model: OnceLock::new(),
            queries: OnceLock::new(),
            next_query: Default::default(),
            batch_size: config.batch_size,
        })
    }

    /// One of fastembed's built-in models, by its enum name or its hub id (case-insensitive);
    /// nothing is downloaded until the first embedding.
    fn builtin(config: &EmbedConfig, name: &str) -> Result<LocalEmbedder> {
        let models = fastembed::TextEmbedding::list_supported_models();
        let wanted = name.trim();
        let info = models
            .iter()
            .find(|m| {
                m.model_code.eq_ignore_ascii_case(wanted)
                    || format!("{:?}", m.model).eq_ignore_ascii_case(wanted)
            })
            .ok_or_else(|| {
                let known: Vec<String> = models.iter().map(|m| format!("{:?}", m.model)).collect();
                Error::invalid(format!(
                    "CODECTX_EMBED_MODEL_NAME={wanted:?}: not one of fastembed's models ({})",
                    known.join(", ")
                ))
            })?;
        if !config.ort_dylib.is_file() {
            return Err(Error::Unavailable(format!(
                "ONNX Runtime library {} not found; {SETUP_HINT} (or set ORT_DYLIB_PATH)",
                config.ort_dylib.display()
            )));
        }
        // Models trained with an instruction for queries (the BGE and E5 families).
        let code = info.model_code.to_ascii_lowercase();
        let query_prefix = if code.contains("bge-") && code.contains("-en") {
            "Represent this sentence for searching relevant passages: "
        } else if code.contains("e5-") {
            "query: "
        } else {
            ""
        };
        Ok(LocalEmbedder {
            manifest: ModelManifest {
                id: info.model_code.clone(),
                dims: info.dim,
                max_tokens: 512,
                pooling: "builtin".into(),
                query_prefix: query_prefix.into(),
            },
            config: config.clone(),
            pooling: fastembed::Pooling::Mean,
            model: OnceLock::new(),
            queries: OnceLock::new(),
            next_query: Default::default(),
            batch_size: config.batch_size,
        })
    }

    /// Starts the ONNX session (once).
    fn session(&self) -> Result<&Mutex<fastembed::TextEmbedding>> {
        self.model
            .get_or_init(|| {
                self.start(self.config.threads)
                    .map(Mutex::new)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::Unavailable(e.clone()))
    }

    /// The query sessions (started once, on the first query).
    fn query_sessions(&self) -> Result<&[Mutex<fastembed::TextEmbedding>]> {
        self.queries
            .get_or_init(|| {
                let n = std::thread::available_parallelism()
                    .map_or(2, |n| n.get())
                    .clamp(1, 4);
                (0..n)
                    .map(|_| self.start(Some(1)).map(Mutex::new))
                    .collect::<Result<Vec<_>>>()
                    .map_err(|e| e.to_string())
            })
            .as_deref()
            .map_err(|e| Error::Unavailable(e.clone()))
    }

    fn start(&self, threads: Option<usize>) -> Result<fastembed::TextEmbedding> {
        let config = &self.config;
        if config.model_name.is_some() {
            return self.start_builtin(threads);
        }
        let dir = &config.model_dir;
        let tokenizer = fastembed::TokenizerFiles {
            tokenizer_file: read(dir, "tokenizer.json")?,
            config_file: read(dir, "config.json")?,
            special_tokens_map_file: read(dir, "special_tokens_map.json")?,
            tokenizer_config_file: read(dir, "tokenizer_config.json")?,
        };
        let onnx = read(dir, "model.onnx")?;
        let env = environment(&config.ort_dylib)?;
        let model = fastembed::UserDefinedEmbeddingModel::new(onnx, tokenizer)
            .with_pooling(self.pooling.clone());
        let mut options = fastembed::InitOptionsUserDefined::new()
            .with_max_length(self.manifest.max_tokens)
            .with_environment(env);
        options.intra_threads = threads;
        fastembed::TextEmbedding::try_new_from_user_defined(model, options).map_err(|e| {
            Error::Unavailable(format!(
                "cannot load the embedding model in {}: {e}",
                dir.display()
            ))
        })
    }

    /// A built-in model: fetched from the hub into `<CODECTX_HOME>/hf` (once), then loaded
    /// like ours.
    fn start_builtin(&self, threads: Option<usize>) -> Result<fastembed::TextEmbedding> {
        let id = &self.manifest.id;
        let model = fastembed::TextEmbedding::list_supported_models()
            .into_iter()
            .find(|m| &m.model_code == id)
            .map(|m| m.model)
            .ok_or_else(|| Error::Internal(format!("built-in model {id} disappeared")))?;
        let env = environment(&self.config.ort_dylib)?;
        let cache = crate::config::codectx_home().join("hf");
        let mut options = fastembed::TextInitOptions::new(model)
            .with_cache_dir(cache.clone())
            .with_show_download_progress(false)
            .with_environment(env);
        options.intra_threads = threads;
        fastembed::TextEmbedding::try_new(options).map_err(|e| {
            Error::Unavailable(format!(
                "cannot load the built-in model {id} (downloaded from the Hugging Face hub into \
                 {}; this machine must reach the hub, or unset CODECTX_EMBED_MODEL_NAME to use \
                 the set-up's model): {e}",
                cache.display()
            ))
        })
    }

    fn run(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut model = self.session()?.lock().unwrap_or_else(|p| p.into_inner());
        let vectors = model
            .embed(texts, Some(self.batch_size))
            .map_err(|e| Error::Unavailable(format!("embedding failed: {e}")))?;
        if let Some(v) = vectors.iter().find(|v| v.len() != self.manifest.dims) {
            return Err(Error::Corrupt(format!(
                "model {} returned {} dimensions, its manifest says {}",
                self.manifest.id,
                v.len(),
                self.manifest.dims
            )));
        }
        Ok(vectors)
    }
}

impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        &self.manifest.id
    }

    fn dims(&self) -> usize {
        self.manifest.dims
    }

    fn embed_documents(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        // Padding goes to the longest text in a batch: embed in length order, answer in input order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let sorted: Vec<String> = order.iter().map(|&i| texts[i].clone()).collect();
        let vectors = self.run(&sorted)?;
        let mut out = vec![Vec::new(); texts.len()];
        for (vector, &i) in vectors.into_iter().zip(&order) {
            out[i] = vector;
        }
        Ok(out)
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        let query = format!("{}{text}", self.manifest.query_prefix);
        let sessions = self.query_sessions()?;
        // A free session if there is one, else wait on the next in turn.
        let start = self
            .next_query
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut model = (0..sessions.len())
            .find_map(|i| sessions[(start + i) % sessions.len()].try_lock().ok())
            .unwrap_or_else(|| {
                sessions[start % sessions.len()]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
            });
        let mut vectors = model
            .embed(&[query], Some(1))
            .map_err(|e| Error::Unavailable(format!("embedding failed: {e}")))?;
        let v = vectors.pop().unwrap_or_default();
        if v.len() != self.manifest.dims {
            return Err(Error::Corrupt(format!(
                "model {} returned {} dimensions, its manifest says {}",
                self.manifest.id,
                v.len(),
                self.manifest.dims
            )));
        }
        Ok(v)
    }

    fn prepare_queries(&self) -> Result<()> {
        // A built-in model may still have to be downloaded: that stays on the query's
        // timed path, so that an unreachable hub costs the dense lane, never a hang.
        if self.config.model_name.is_some() {
            return Ok(());
        }
        self.query_sessions().map(|_| ())
    }
}
