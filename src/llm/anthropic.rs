//! The Anthropic Messages API (`POST /v1/messages`) with tool use.

use super::{
    Block, ChatRequest, ChatResponse, Http, LlmClient, LlmConfig, Role, StopReason, Usage,
};
use crate::error::{Error, Result};
use serde_json::{Value, json};

pub struct Anthropic {
    url: String,
    model: String,
    http: Http,
}

impl Anthropic {
    pub(crate) fn new(config: &LlmConfig, http: Http) -> Anthropic {
        Anthropic {
            url: format!("{}/v1/messages", config.base_url()),
            model: config.model.clone(),
            http,
        }
    }
}

/// The request body in the Messages wire format.
pub fn body(model: &str, request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            let content: Vec<Value> = m
                .content
                .iter()
                .map(|b| match b {
                    Block::Text { text } => json!({"type": "text", "text": text}),
                    Block::ToolCall {
                        id,
                        name,
                        arguments,
                    } => {
                        // The API wants an object back; a malformed call is echoed as text.
                        let input = serde_json::from_str::<Value>(arguments)
                            .ok()
                            .filter(Value::is_object)
                            .unwrap_or_else(|| json!({ "_unparsed": arguments }));
                        json!({"type": "tool_use", "id": id, "name": name, "input": input})
                    }
                    Block::ToolResult {
                        id,
                        content,
                        is_error,
                    } => json!({
                        "type": "tool_result",
                        "tool_use_id": id,
                        "content": content,
                        "is_error": is_error,
                    }),
                })
                .collect();
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            json!({"role": role, "content": content})
        })
        .collect();
    let tools: Vec<Value> = request
        .tools
        .iter()
        .map(
            |t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}),
        )
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens,
        "system": request.system,
        "messages": messages,
    });
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
    }
    body
}

/// Reads an answer in the Messages wire format.
pub fn parse(answer: &Value) -> Result<(Vec<Block>, StopReason, Usage)> {
    let bad = |what: &str| Error::Unavailable(format!("the Anthropic answer {what}"));
    let items = answer["content"]
        .as_array()
        .ok_or_else(|| bad("has no `content` array"))?;
    let mut content = Vec::new();
    for item in items {
        match item["type"].as_str() {
            Some("text") => content.push(Block::Text {
                text: item["text"].as_str().unwrap_or_default().to_string(),
            }),
            Some("tool_use") => content.push(Block::ToolCall {
                id: item["id"].as_str().unwrap_or_default().to_string(),
                name: item["name"].as_str().unwrap_or_default().to_string(),
                arguments: super::arguments_text(&item["input"]),
            }),
            // Thinking and other block types carry nothing the loop acts on.
            _ => {}
        }
    }
    let stop = match answer["stop_reason"].as_str() {
        Some("end_turn") | Some("stop_sequence") | None => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        Some(other) => StopReason::Other(other.to_string()),
    };
    let usage = Usage {
        input_tokens: answer["usage"]["input_tokens"].as_u64().unwrap_or(0),
        output_tokens: answer["usage"]["output_tokens"].as_u64().unwrap_or(0),
    };
    Ok((content, stop, usage))
}

impl LlmClient for Anthropic {
    fn name(&self) -> String {
        format!("anthropic:{}", self.model)
    }

    fn complete(&self, request: &ChatRequest) -> Result<ChatResponse> {
        let mut headers = vec![("anthropic-version", "2023-06-01".to_string())];
        if let Some(key) = self.http.key() {
            headers.push(("x-api-key", key.to_string()));
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
