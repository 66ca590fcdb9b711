//! The LLM client seam: one conversation model (text, tool calls, tool results), the
//! providers behind `LlmClient` (Anthropic Messages, OpenAI-compatible chat completions),
//! retries with backoff on 429/5xx, and token and cost accounting.
//!
//! Keys come only from the environment and are never logged or serialized.

pub mod anthropic;
pub mod openai;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    /// A tool call as the model wrote it: `arguments` is the raw JSON text, parsed (and
    /// rejected with a correctable error) by whoever runs the tool.
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    ToolResult {
        id: String,
        content: String,
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Block>,
}

impl Message {
    pub fn user(text: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            content: vec![Block::Text { text: text.into() }],
        }
    }

    /// The message's text blocks, joined.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for b in &self.content {
            if let Block::Text { text } = b {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(text);
            }
        }
        out
    }
}

/// A tool the model may call: its name, what it does, and a JSON Schema of its arguments.
#[derive(Debug, Clone, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub system: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    Other(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone)]
pub struct ChatResponse {
    pub content: Vec<Block>,
    pub stop: StopReason,
    pub usage: Usage,
    /// HTTP attempts this answer took (1 when no retry was needed).
    pub attempts: u32,
}

/// A chat model with tool calling.
pub trait LlmClient: Send + Sync {
    /// `provider:model`, for logs and accounting.
    fn name(&self) -> String;
    fn complete(&self, request: &ChatRequest) -> Result<ChatResponse>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// The Anthropic Messages API.
    Anthropic,
    /// OpenAI chat completions, as OpenAI, vLLM, llama.cpp's server and Ollama speak it.
    Openai,
}

/// How to reach a model (the `[llm]` table of the agent's TOML config).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    pub provider: Provider,
    pub model: String,
    /// Default: `https://api.anthropic.com` or `https://api.openai.com/v1`.
    pub base_url: Option<String>,
    /// The environment variable holding the key (default `ANTHROPIC_API_KEY` or
    /// `OPENAI_API_KEY`). The key itself is never read from a file.
    pub api_key_env: Option<String>,
    pub timeout_s: u64,
    pub max_retries: u32,
    /// The first retry's wait; each next one doubles (a `retry-after` header wins).
    pub backoff_ms: u64,
    /// Tokens the model can attend to; the conversation is trimmed to fit.
    pub context_window: usize,
    pub max_output_tokens: u32,
    /// USD per million input and output tokens, for the run's cost line.
    pub price_input_per_mtok: f64,
    pub price_output_per_mtok: f64,
}

impl Default for LlmConfig {
    fn default() -> LlmConfig {
        LlmConfig {
            provider: Provider::Anthropic,
            model: "claude-sonnet-4-5".into(),
            base_url: None,
            api_key_env: None,
            timeout_s: 300,
            max_retries: 4,
            backoff_ms: 500,
            context_window: 200_000,
            max_output_tokens: 4096,
            price_input_per_mtok: 3.0,
            price_output_per_mtok: 15.0,
        }
    }
}

impl LlmConfig {
    pub fn base_url(&self) -> String {
        let url = self
            .base_url
            .clone()
            .unwrap_or_else(|| match self.provider {
                Provider::Anthropic => "https://api.anthropic.com".into(),
                Provider::Openai => "https://api.openai.com/v1".into(),
            });
        url.trim_end_matches('/').to_string()
    }

    fn key_env(&self) -> String {
        self.api_key_env
            .clone()
            .unwrap_or_else(|| match self.provider {
                Provider::Anthropic => "ANTHROPIC_API_KEY".into(),
                Provider::Openai => "OPENAI_API_KEY".into(),
            })
    }

    /// The key from the environment. A local server (loopback URL) may need none; a
    /// hosted API without one is a configuration error named up front.
    fn api_key(&self) -> Result<Option<String>> {
        let var = self.key_env();
        match std::env::var(&var) {
            Ok(k) if !k.trim().is_empty() => Ok(Some(k.trim().to_string())),
            _ if self.base_url.is_some() => Ok(None),
            _ => Err(Error::invalid(format!(
                "the {:?} provider needs a key in ${var} (or set llm.base_url to a local server)",
                self.provider
            ))),
        }
    }

    /// The cost in USD of `usage` at the configured prices.
    pub fn cost(&self, usage: Usage) -> f64 {
        (usage.input_tokens as f64 * self.price_input_per_mtok
            + usage.output_tokens as f64 * self.price_output_per_mtok)
            / 1e6
    }
}

/// The client `config` names.
pub fn client(config: &LlmConfig) -> Result<Box<dyn LlmClient>> {
    if config.model.trim().is_empty() {
        return Err(Error::invalid("llm.model is empty"));
    }
    let http = Http::new(config, config.api_key()?);
    Ok(match config.provider {
        Provider::Anthropic => Box::new(anthropic::Anthropic::new(config, http)),
        Provider::Openai => Box::new(openai::OpenAi::new(config, http)),
    })
}

/// JSON over HTTP with retries: 429, 5xx and transport failures are retried with
/// exponential backoff (or the server's `retry-after`); other statuses fail at once.
pub(crate) struct Http {
    agent: ureq::Agent,
    key: Option<String>,
    max_retries: u32,
    backoff: Duration,
}

/// The longest wait between two attempts, whatever the server asks.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Http {
    fn new(config: &LlmConfig, key: Option<String>) -> Http {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(config.timeout_s.max(1))))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Http {
            agent,
            key,
            max_retries: config.max_retries,
            backoff: Duration::from_millis(config.backoff_ms),
        }
    }

    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// POSTs `body` and returns the parsed JSON answer and the attempts it took.
    pub(crate) fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
    ) -> Result<(Value, u32)> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut request = self.agent.post(url);
            for (k, v) in headers {
                request = request.header(*k, v.as_str());
            }
            let (retry, wait, error) = match request.send_json(body) {
                Err(e) => (true, None, format!("request to {url} failed: {e}")),
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let wait = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .map(|s| Duration::from_secs_f64(s.clamp(0.0, MAX_BACKOFF.as_secs_f64())));
                    let text = response.body_mut().read_to_string().map_err(|e| {
                        Error::Unavailable(format!("reading the answer of {url}: {e}"))
                    })?;
                    if status == 200 {
                        let value = serde_json::from_str(&text).map_err(|e| {
                            Error::Unavailable(format!("{url} answered with invalid JSON: {e}"))
                        })?;
                        return Ok((value, attempt));
                    }
                    let excerpt: String = text.chars().take(300).collect();
                    let retry = status == 429 || status >= 500;
                    (retry, wait, format!("{url} answered {status}: {excerpt}"))
                }
            };
            if !retry {
                return Err(Error::invalid(error));
            }
            if attempt > self.max_retries {
                return Err(Error::Unavailable(format!(
                    "{error} (gave up after {attempt} attempts)"
                )));
            }
            let backoff = self.backoff.saturating_mul(1 << (attempt - 1).min(16));
            std::thread::sleep(wait.unwrap_or(backoff).min(MAX_BACKOFF));
            tracing::warn!(attempt, "{error}; retrying");
        }
    }
}

/// The `arguments` JSON text of a tool call, as the model sent it.
pub(crate) fn arguments_text(input: &Value) -> String {
    match input {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
