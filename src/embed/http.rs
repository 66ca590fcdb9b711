//! The HTTP embedder: any server that speaks OpenAI's `/v1/embeddings` (OpenAI,
//! text-embeddings-inference, vLLM, Ollama, llama.cpp's server), for GPU boxes and scale.

use super::Embedder;
pub use crate::config::HttpEmbedConfig;
use crate::error::{Error, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

pub struct HttpEmbedder {
    config: HttpEmbedConfig,
    agent: ureq::Agent,
    id: String,
    dims: usize,
}

impl HttpEmbedder {
    /// Connects and learns the dimensions from one probe request.
    pub fn connect(config: HttpEmbedConfig) -> Result<HttpEmbedder> {
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(Error::invalid(format!(
                "embedding URL {:?}: expected http:// or https://",
                config.url
            )));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut embedder = HttpEmbedder {
            id: format!("http:{}", config.model),
            config,
            agent,
            dims: 0,
        };
        let probe = embedder.call(&["dimension probe".to_string()])?;
        embedder.dims = probe.first().map(Vec::len).unwrap_or(0);
        if embedder.dims == 0 {
            return Err(Error::Unavailable(format!(
                "{} returned an empty embedding",
                embedder.config.url
            )));
        }
        Ok(embedder)
    }

    fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let url = &self.config.url;
        let mut request = self.agent.post(url);
        if let Some(key) = &self.config.api_key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        let body = serde_json::json!({ "model": self.config.model, "input": texts });
        let mut response = request
            .send_json(&body)
            .map_err(|e| Error::Unavailable(format!("embedding request to {url} failed: {e}")))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Error::Unavailable(format!("reading the answer of {url}: {e}")))?;
        if status != 200 {
            let excerpt: String = text.chars().take(200).collect();
            return Err(Error::Unavailable(format!(
                "embedding server {url} answered {status}: {excerpt}"
            )));
        }
        let parsed: Response = serde_json::from_str(&text).map_err(|e| {
            Error::Unavailable(format!(
                "embedding server {url} sent an unexpected answer: {e}"
            ))
        })?;
        if parsed.data.len() != texts.len() {
            return Err(Error::Unavailable(format!(
                "embedding server {url} returned {} vectors for {} texts",
                parsed.data.len(),
                texts.len()
            )));
        }
        let mut items = parsed.data;
        if items.iter().all(|i| i.index.is_some()) {
            items.sort_by_key(|i| i.index);
        }
        Ok(items.into_iter().map(|i| i.embedding).collect())
    }

    fn checked(&self, vectors: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        if let Some(v) = vectors.iter().find(|v| v.len() != self.dims) {
            return Err(Error::Unavailable(format!(
                "embedding server {} returned {} dimensions, expected {}",
                self.config.url,
                v.len(),
                self.dims
            )));
        }
        Ok(vectors)
    }
}

impl Embedder for HttpEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn embed_documents(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.config.batch_size.max(1)) {
            out.extend(self.checked(self.call(batch)?)?);
        }
        Ok(out)
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        let mut v = self.checked(self.call(&[text.to_string()])?)?;
        Ok(v.pop().unwrap_or_default())
    }
}
