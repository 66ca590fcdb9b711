//! OpenAI-compatible chat completions (`POST {base}/chat/completions`) with function tools:
//! OpenAI itself, vLLM, llama.cpp's server and Ollama.

use super::{
    Block, ChatRequest, ChatResponse, Http, LlmClient, LlmConfig, Role, StopReason, Usage,
};
use crate::error::{Error, Result};
use serde_json::{Value, json};

pub struct OpenAi {
    url: String,
    model: String,
    http: Http,
}

impl OpenAi {
    pub(crate) fn new(config: &LlmConfig, http: Http) -> OpenAi {
        OpenAi {
            url: format!("{}/chat/completions", config.base_url()),
            model: config.model.clone(),
            http,
        }
    }
}

/// The request body in the chat-completions wire format: tool results become `tool`
/// messages, tool calls ride on the assistant message.
pub fn body(model: &str, request: &ChatRequest) -> Value {
    let mut messages = vec![json!({"role": "system", "content": request.system})];
    for m in &request.messages {
        match m.role {
            Role::Assistant => {
                let calls: Vec<Value> = m
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        Block::ToolCall {
                            id,
                            name,
                            arguments,
                        } => Some(json!({
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        })),
                        _ => None,
                    })
                    .collect();
                let mut msg = json!({"role": "assistant", "content": m.text()});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
            Role::User => {
                for b in &m.content {
                    if let Block::ToolResult { id, content, .. } = b {
                        messages
                            .push(json!({"role": "tool", "tool_call_id": id, "content": content}));
                    }
                }
                let text = m.text();
                if !text.is_empty() {
                    messages.push(json!({"role": "user", "content": text}));
                }
            }
        }
    }
    let tools: Vec<Value> = request
        .tools
        .iter()
        .map(|t| {
            json!({
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
            })
        })
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": messages,
    });
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
    }
    body
}

/// Reads an answer in the chat-completions wire format.
pub fn parse(answer: &Value) -> Result<(Vec<Block>, StopReason, Usage)> {
    let choice = answer["choices"]
        .get(0)
        .ok_or_else(|| Error::Unavailable("the chat-completions answer has no choices".into()))?;
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(Block::Text {
            text: text.to_string(),
        });
    }
    for (i, call) in message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let id = call["id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("call_{i}"));
        content.push(Block::ToolCall {
            id,
            name: call["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            arguments: super::arguments_text(&call["function"]["arguments"]),
        });
    }
    let stop = match choice["finish_reason"].as_str() {
        Some("stop") | None => StopReason::EndTurn,
        Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
        Some("length") => StopReason::MaxTokens,
        Some(other) => StopReason::Other(other.to_string()),
    };
    let usage = Usage {
        input_tokens: answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: answer["usage"]["completion_tokens"].as_u64().unwrap_or(0),
    };
    Ok((content, stop, usage))
}

impl LlmClient for OpenAi {
    fn name(&self) -> String {
        format!("openai:{}", self.model)
    }

    fn complete(&self, request: &ChatRequest) -> Result<ChatResponse> {
        let mut headers = Vec::new();
        if let Some(key) = self.http.key() {
            headers.push(("authorization", format!("Bearer {key}")));
        }
        let (answer, attempts) =
            self.http
                .post(&self.url, &headers, &body(&self.model, request))?;
        let (content, stop, usage) = parse(&answer)?;
        Ok(ChatResponse {
            content,
            stop,
            usage,
            attempts,
        })
    }
}
