//! The agent's configuration: a TOML file (`[llm]` and `[agent]` tables) with environment
//! overrides. API keys are never read from the file, only from the environment.

use crate::error::{Error, Result};
use crate::llm::{LlmConfig, Provider};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentFile {
    pub llm: LlmConfig,
    pub agent: AgentConfig,
}

/// How the loop runs. Budgets are tokens of the configured tokenizer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Run by `sh -c` in the worktree; empty: guessed from the repository (Cargo.toml:
    /// `cargo test`, Python: `python3 -m pytest -q` when pytest is importable, else
    /// `python3 -m unittest`).
    pub test_command: String,
    pub test_timeout_s: u64,
    /// Iterations (test runs) before the loop gives up; the CLI flag and the policy's
    /// value for the task type come first.
    pub max_iterations: Option<u32>,
    /// Model turns within one iteration before the loop runs the tests itself.
    pub max_turns_per_iteration: u32,
    /// The tokenizer budgets are counted with (`cl100k`, `o200k`, a tokenizer.json).
    pub tokenizer: String,
    /// Prompt sections' budgets.
    pub conventions_budget: usize,
    pub task_budget: usize,
    pub context_budget: usize,
    /// Each tool result's budget (test output keeps its tail, where failures are).
    pub tool_output_budget: usize,
    /// Branch names start with this.
    pub branch_prefix: String,
    /// Embed what the start-of-run reindex adds (off: the service answers lexically for
    /// chunks it has not embedded yet).
    pub reindex_embed: bool,
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig {
            test_command: String::new(),
            test_timeout_s: 900,
            max_iterations: None,
            max_turns_per_iteration: 12,
            tokenizer: crate::tokens::DEFAULT_TOKENIZER.into(),
            conventions_budget: 2000,
            task_budget: 2000,
            context_budget: 6000,
            tool_output_budget: 3000,
            branch_prefix: "codectx/agent/".into(),
            reindex_embed: true,
        }
    }
}

impl AgentFile {
    /// Reads `path` (or the defaults), then applies `CODECTX_LLM_PROVIDER`,
    /// `CODECTX_LLM_MODEL` and `CODECTX_LLM_BASE_URL` when set.
    pub fn load(path: Option<&Path>) -> Result<AgentFile> {
        let mut file = match path {
            None => AgentFile::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                toml::from_str(&text).map_err(|e| {
                    Error::invalid(format!(
                        "agent config {}: {}",
                        p.display(),
                        e.to_string().trim()
                    ))
                })?
            }
        };
        if let Ok(p) = std::env::var("CODECTX_LLM_PROVIDER") {
            file.llm.provider = match p.trim() {
                "anthropic" => Provider::Anthropic,
                "openai" => Provider::Openai,
                other => {
                    return Err(Error::invalid(format!(
                        "CODECTX_LLM_PROVIDER={other:?}: expected anthropic or openai"
                    )));
                }
            };
        }
        if let Ok(m) = std::env::var("CODECTX_LLM_MODEL") {
            file.llm.model = m;
        }
        if let Ok(u) = std::env::var("CODECTX_LLM_BASE_URL") {
            file.llm.base_url = Some(u);
        }
        Ok(file)
    }
}
