//! Configuration: defaults, then environment, then flags; validated once, then passed as structs.

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;

/// How the walker decides what to read.
#[derive(Debug, Clone)]
pub struct WalkConfig {
    /// Files larger than this are skipped (reason `too-large`).
    pub max_file_bytes: u64,
    /// A file whose longest line exceeds this many bytes is treated as minified.
    pub max_line_bytes: usize,
    /// A file whose mean line length exceeds this is treated as minified.
    pub max_mean_line_bytes: usize,
    /// Follow symbolic links that stay inside the root (links out are always skipped).
    pub follow_links: bool,
}

impl Default for WalkConfig {
    fn default() -> Self {
        WalkConfig {
            max_file_bytes: 1024 * 1024,
            max_line_bytes: 4096,
            max_mean_line_bytes: 300,
            follow_links: true,
        }
    }
}

/// How files are cut into chunks.
#[derive(Debug, Clone)]
pub struct ChunkConfig {
    /// A definition larger than this is split at its children's boundaries.
    pub max_chunk_bytes: usize,
    /// Adjacent small items are merged until a chunk reaches about this size.
    pub target_chunk_bytes: usize,
    /// Items (definitions, top-level code) smaller than this merge with small neighbours...
    pub merge_below_bytes: usize,
    /// ...into groups of at most this size.
    pub merge_max_bytes: usize,
    /// Lines per window for files chunked by lines.
    pub window_lines: usize,
    /// Work allowed to parse one file and find its definitions before it falls back to
    /// line windows, in the chunker's work units (counted, not timed, so that the same
    /// file gets the same chunks on a busy machine as on an idle one; see
    /// `syntax::code::Budget`). The default is about one second of one core here.
    pub parse_work: u64,
}

/// The chunker's default work budget per file (see [`ChunkConfig::parse_work`]).
pub const DEFAULT_PARSE_WORK: u64 = 1_000_000;

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            max_chunk_bytes: 3000,
            target_chunk_bytes: 1500,
            merge_below_bytes: 160,
            merge_max_bytes: 800,
            window_lines: 60,
            parse_work: DEFAULT_PARSE_WORK,
        }
    }
}

/// Where and what to call.
#[derive(Debug, Clone)]
pub struct HttpEmbedConfig {
    /// The full endpoint, e.g. `http://gpu-box:8080/v1/embeddings`.
    pub url: String,
    /// The `model` field of each request.
    pub model: String,
    /// Sent as `Authorization: Bearer ...` when set; never logged.
    pub api_key: Option<String>,
    /// Texts per request.
    pub batch_size: usize,
    pub timeout: Duration,
}

/// Where the embedding model and its runtime are, and how to run them.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    /// A directory with `model.onnx`, the tokenizer files and `codectx-model.json`.
    pub model_dir: PathBuf,
    /// ONNX Runtime's shared library (`libonnxruntime.so`).
    pub ort_dylib: PathBuf,
    /// Texts per model call.
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads (`None`: every core).
    pub threads: Option<usize>,
    /// A query embedding slower than this makes the search lexical (`degraded`).
    pub query_timeout: Duration,
    /// Embed through an OpenAI-compatible HTTP endpoint instead of the local model
    /// (`CODECTX_EMBED_URL`, `CODECTX_EMBED_MODEL`, `CODECTX_EMBED_API_KEY`).
    pub http: Option<HttpEmbedConfig>,
    /// One of fastembed's built-in models by name (`BGESmallENV15`, `Xenova/bge-small-en-v1.5`),
    /// downloaded from the Hugging Face hub into `<CODECTX_HOME>/hf` on first use, instead
    /// of the model directory (`CODECTX_EMBED_MODEL_NAME`). Needs a machine that reaches the
    /// hub; the set-up's model needs nothing.
    pub model_name: Option<String>,
}

/// Where `scripts/setup` installs the runtime, the model and tools: `$CODECTX_HOME`, or
/// `~/.cache/codectx`.
pub fn codectx_home() -> PathBuf {
    std::env::var_os("CODECTX_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("codectx")))
        .unwrap_or_else(|| PathBuf::from(".codectx-cache"))
}

impl Default for EmbedConfig {
    /// The paths `scripts/setup` installs to, under [`codectx_home`], overridden by
    /// `CODECTX_MODEL_DIR` and `ORT_DYLIB_PATH`.
    fn default() -> Self {
        let home = codectx_home();
        let env_path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        EmbedConfig {
            model_dir: env_path("CODECTX_MODEL_DIR")
                .unwrap_or_else(|| home.join("models/all-minilm-l6-v2-int8")),
            ort_dylib: env_path("ORT_DYLIB_PATH")
                .unwrap_or_else(|| home.join("ort/1.32.0/libonnxruntime.so")),
            model_name: std::env::var("CODECTX_EMBED_MODEL_NAME")
                .ok()
                .filter(|n| !n.trim().is_empty()),
            batch_size: 32,
            threads: None,
            query_timeout: Duration::from_secs(2),
            http: env_path("CODECTX_EMBED_URL").map(|url| HttpEmbedConfig {
                url: url.to_string_lossy().into_owned(),
                model: std::env::var("CODECTX_EMBED_MODEL").unwrap_or_else(|_| "default".into()),
                api_key: std::env::var("CODECTX_EMBED_API_KEY")
                    .ok()
                    .filter(|k| !k.is_empty()),
                batch_size: 64,
                timeout: Duration::from_secs(60),
            }),
        }
    }
}

/// Which model ranks files (`CODECTX_RANKER`: `rrf`, or a model file's path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RankerChoice {
    /// The model shipped with this build (`models/ranker.json`).
    #[default]
    Shipped,
    /// A model file (trained with `benches/train-ranker.sh`); one that cannot be read
    /// leaves ranking to RRF and says so in every answer's `degraded`.
    File(PathBuf),
    /// Reciprocal rank fusion of the lanes, no model.
    Rrf,
}

/// Everything the engine needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where indexes live: one sub-directory per repository.
    pub data_dir: PathBuf,
    pub walk: WalkConfig,
    pub chunk: ChunkConfig,
    /// Memory budget of the tantivy writer.
    pub writer_memory_bytes: usize,
    /// The embedding model and its runtime.
    pub embed: EmbedConfig,
    /// Keep vectors on this Qdrant server instead of the embedded store
    /// (`CODECTX_QDRANT_URL`, `CODECTX_QDRANT_API_KEY`).
    pub qdrant: Option<crate::index::qdrant::QdrantConfig>,
    /// The file ranking model.
    pub ranker: RankerChoice,
    /// The most past commits a repository's history lane holds (the newest; 0: none).
    pub history_commits: usize,
}

impl Config {
    /// Defaults, with `CODECTX_DATA_DIR` and `CODECTX_MAX_FILE_BYTES` applied from the environment.
    pub fn from_env() -> Result<Config> {
        let mut config = Config::with_data_dir(default_data_dir());
        if let Some(dir) = std::env::var_os("CODECTX_DATA_DIR").filter(|d| !d.is_empty()) {
            config.data_dir = PathBuf::from(dir);
        }
        if let Ok(v) = std::env::var("CODECTX_MAX_FILE_BYTES") {
            config.walk.max_file_bytes = v.trim().parse().map_err(|_| {
                Error::invalid(format!(
                    "CODECTX_MAX_FILE_BYTES={v:?}: expected a whole number of bytes"
                ))
            })?;
        }
        if let Some(url) = std::env::var("CODECTX_QDRANT_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            config.qdrant = Some(crate::index::qdrant::QdrantConfig {
                url,
                api_key: std::env::var("CODECTX_QDRANT_API_KEY")
                    .ok()
                    .filter(|k| !k.is_empty()),
            });
        }
        match std::env::var("CODECTX_RANKER")
            .ok()
            .as_deref()
            .map(str::trim)
        {
            None | Some("") | Some("shipped") => {}
            Some("rrf") => config.ranker = RankerChoice::Rrf,
            Some(path) => config.ranker = RankerChoice::File(PathBuf::from(path)),
        }
        config.validate()?;
        Ok(config)
    }

    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            walk: WalkConfig::default(),
            chunk: ChunkConfig::default(),
            writer_memory_bytes: 128 * 1024 * 1024,
            embed: EmbedConfig::default(),
            qdrant: None,
            ranker: RankerChoice::default(),
            history_commits: 20_000,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.walk.max_file_bytes == 0 {
            return Err(Error::invalid("max file size must be greater than 0"));
        }
        if self.chunk.max_chunk_bytes < self.chunk.target_chunk_bytes {
            return Err(Error::invalid(format!(
                "max chunk size ({}) must be at least the target chunk size ({})",
                self.chunk.max_chunk_bytes, self.chunk.target_chunk_bytes
            )));
        }
        if self.chunk.window_lines == 0 {
            return Err(Error::invalid("window lines must be greater than 0"));
        }
        if self.writer_memory_bytes < 15_000_000 {
            return Err(Error::invalid("writer memory must be at least 15 MB"));
        }
        Ok(())
    }
}

/// `$XDG_DATA_HOME/codectx` (or the platform equivalent), else `./.codectx`.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("codectx"))
        .unwrap_or_else(|| PathBuf::from(".codectx"))
}
