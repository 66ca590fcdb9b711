//! Token counting for prompt budgets: OpenAI's cl100k and o200k (embedded, offline) and any
//! Hugging Face `tokenizer.json`, behind one small trait.

use crate::error::{Error, Result};
use std::path::Path;
use std::sync::Arc;

/// Counts tokens the way one LLM's tokenizer does.
pub trait TokenCounter: Send + Sync {
    /// The name the counter was chosen by (`cl100k`, `o200k`, `hf:<path>`).
    fn name(&self) -> &str;
    fn count(&self, text: &str) -> usize;
}

/// The default tokenizer for budgets.
pub const DEFAULT_TOKENIZER: &str = "cl100k";

/// A tiktoken encoding, compiled into the binary.
struct Tiktoken {
    name: &'static str,
    bpe: &'static tiktoken_rs::CoreBPE,
}

impl TokenCounter for Tiktoken {
    fn name(&self) -> &str {
        self.name
    }

    fn count(&self, text: &str) -> usize {
        self.bpe.encode_ordinary(text).len()
    }
}

/// A Hugging Face tokenizer loaded from its `tokenizer.json`, without truncation or padding.
struct HuggingFace {
    name: String,
    tokenizer: tokenizers::Tokenizer,
}

impl TokenCounter for HuggingFace {
    fn name(&self) -> &str {
        &self.name
    }

    fn count(&self, text: &str) -> usize {
        // Counting never fails a pack: an encoding error counts as one token per byte.
        self.tokenizer
            .encode(text, false)
            .map(|e| e.len())
            .unwrap_or(text.len())
    }
}

/// Resolves a tokenizer by name: `cl100k` (alias `cl100k_base`, `gpt-4`), `o200k` (alias
/// `o200k_base`, `gpt-4o`), or a path to a `tokenizer.json` (optionally `hf:` prefixed).
pub fn counter(spec: &str) -> Result<Arc<dyn TokenCounter>> {
    let spec = spec.trim();
    match spec.to_ascii_lowercase().as_str() {
        "" | "cl100k" | "cl100k_base" | "gpt-4" | "gpt-3.5-turbo" => {
            return Ok(Arc::new(Tiktoken {
                name: "cl100k",
                bpe: tiktoken_rs::cl100k_base_singleton(),
            }));
        }
        "o200k" | "o200k_base" | "gpt-4o" | "gpt-4.1" | "o1" | "o3" => {
            return Ok(Arc::new(Tiktoken {
                name: "o200k",
                bpe: tiktoken_rs::o200k_base_singleton(),
            }));
        }
        _ => {}
    }
    let path = Path::new(spec.strip_prefix("hf:").unwrap_or(spec));
    if !path.is_file() || path.extension().is_none_or(|e| e != "json") {
        return Err(Error::invalid(format!(
            "tokenizer {spec:?}: not cl100k, o200k or a tokenizer .json file"
        )));
    }
    let mut tokenizer = tokenizers::Tokenizer::from_file(path)
        .map_err(|e| Error::invalid(format!("tokenizer {}: {e}", path.display())))?;
    tokenizer
        .with_truncation(None)
        .map_err(|e| Error::invalid(format!("tokenizer {}: {e}", path.display())))?;
    tokenizer.with_padding(None);
    Ok(Arc::new(HuggingFace {
        name: format!("hf:{}", path.display()),
        tokenizer,
    }))
}

/// `text` cut to at most `budget` tokens, keeping its head (or, with `keep_tail`, a short
/// head and a long tail), with a note saying how much was left out.
pub fn fit(counter: &dyn TokenCounter, text: &str, budget: usize, keep_tail: bool) -> String {
    let tokens = counter.count(text);
    if tokens <= budget {
        return text.to_string();
    }
    let note_budget = 16;
    let keep = budget.saturating_sub(note_budget).max(1);
    // Bytes per token measured on this text, shrunk until the cut fits.
    let mut chars = (text.len() * keep / tokens.max(1)).max(1);
    loop {
        let cut = if keep_tail {
            let head = chars / 5;
            let tail = chars - head;
            let h = floor(text, head);
            let t = ceil(text, text.len().saturating_sub(tail));
            format!(
                "{}\n[... {} tokens left out ...]\n{}",
                &text[..h],
                tokens.saturating_sub(keep),
                &text[t.max(h)..]
            )
        } else {
            let h = floor(text, chars);
            format!(
                "{}\n[... {} tokens left out ...]",
                &text[..h],
                tokens.saturating_sub(keep)
            )
        };
        if counter.count(&cut) <= budget || chars <= 16 {
            return cut;
        }
        chars = chars * 9 / 10;
    }
}

fn floor(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiktoken_counts_offline() {
        let cl = counter("cl100k").unwrap();
        assert_eq!(cl.count("hello world"), 2);
        assert_eq!(cl.count(""), 0);
        let o = counter("gpt-4o").unwrap();
        assert_eq!(o.name(), "o200k");
        assert!(o.count("fn parse_http_request(req: &Request) -> Result<()>") > 5);
    }

    #[test]
    fn an_unknown_tokenizer_is_named_in_the_error() {
        let err = counter("llama-9000").err().unwrap().to_string();
        assert!(err.contains("llama-9000"), "{err}");
    }
}
