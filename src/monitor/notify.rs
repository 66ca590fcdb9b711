//! What the monitor tells the outside: a pull request through GitHub's REST API and a
//! message to a Slack-compatible incoming webhook.
//!
//! Architecture Invariant: the token (`GITHUB_TOKEN`) and the webhook address (its path is
//! the secret) come from the environment only and appear in no error, event or file: an
//! error names the environment variable, never its value.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[github]` of the monitor's config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// `owner/name`.
    pub repository: String,
    /// The branch the pull request merges into.
    #[serde(default = "default_base")]
    pub base: String,
    /// GitHub's API root (GitHub Enterprise: `https://HOST/api/v3`).
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_base() -> String {
    "main".into()
}

fn default_api() -> String {
    "https://api.github.com".into()
}

/// `[slack]` of the monitor's config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The environment variable that holds the webhook's address.
    #[serde(default = "default_webhook_env")]
    pub webhook_env: String,
}

fn default_webhook_env() -> String {
    "CODECTX_SLACK_WEBHOOK".into()
}

/// The environment variable GitHub's token is read from.
pub const GITHUB_TOKEN_ENV: &str = "GITHUB_TOKEN";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// Opens a pull request of `branch` into the configured base; returns its address.
pub fn open_pull_request(
    gh: &GithubConfig,
    title: &str,
    branch: &str,
    body: &str,
) -> Result<String> {
    let token = std::env::var(GITHUB_TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "[github] is configured but ${GITHUB_TOKEN_ENV} is not set"
            ))
        })?;
    if gh.repository.split('/').count() != 2 || gh.repository.contains(char::is_whitespace) {
        return Err(Error::invalid(format!(
            "[github] repository {:?}: expected owner/name",
            gh.repository
        )));
    }
    let url = format!(
        "{}/repos/{}/pulls",
        gh.api_url.trim_end_matches('/'),
        gh.repository
    );
    let payload = serde_json::json!({
        "title": title,
        "head": branch,
        "base": gh.base,
        "body": body,
        "maintainer_can_modify": true,
    });
    let response = agent()
        .post(&url)
        .header("Authorization", format!("Bearer {}", token.trim()))
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .header("User-Agent", "codectx-monitor")
        .send_json(&payload);
    let mut response = response.map_err(|e| {
        Error::Unavailable(format!(
            "GitHub at {url}: {}",
            scrub(&e.to_string(), &token)
        ))
    })?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if status != 201 {
        let excerpt: String = scrub(&text, &token).chars().take(300).collect();
        return Err(Error::Unavailable(format!(
            "GitHub at {url} answered {status}: {excerpt}"
        )));
    }
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Unavailable(format!("GitHub at {url} answered invalid JSON: {e}")))?;
    Ok(value["html_url"]
        .as_str()
        .or(value["url"].as_str())
        .unwrap_or("(no address in GitHub's answer)")
        .to_string())
}

/// Posts `text` to the Slack-compatible webhook when one is configured and set.
pub fn slack(config: Option<&SlackConfig>, text: &str) -> Result<()> {
    let Some(config) = config else {
        return Ok(());
    };
    let var = &config.webhook_env;
    let url = std::env::var(var)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "slack: [slack] is configured but ${var} is not set"
            ))
        })?;
    let url = url.trim();
    let response = agent()
        .post(url)
        .send_json(serde_json::json!({ "text": crate::redact::redact(text).text }));
    match response {
        Err(e) => Err(Error::Unavailable(format!(
            "slack: the webhook in ${var}: {}",
            scrub(&e.to_string(), url)
        ))),
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(Error::Unavailable(format!(
            "slack: the webhook in ${var} answered {}",
            r.status().as_u16()
        ))),
    }
}

/// `text` with `secret` (and, for an address, its path) cut out.
fn scrub(text: &str, secret: &str) -> String {
    let mut out = text.replace(secret, "[secret]");
    if let Some(rest) = secret.split_once("://").map(|(_, r)| r)
        && let Some((_, path)) = rest.split_once('/')
        && !path.is_empty()
    {
        out = out.replace(path, "[secret]");
    }
    out
}
