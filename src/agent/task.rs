//! The agent's task: a structured template (JSON, validated against the published schema
//! `docs/schemas/agent-task.schema.json`) or free text such as an issue body.

use crate::error::{Error, Result};
use crate::policy::Severity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A structured task, as in the seed's template.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// One line: what to do. Becomes the commit subject.
    pub title: String,
    /// A task type of the policy (e.g. `bug_fix_isolated`); classified from labels and text
    /// when absent. A type the policy does not know is HIGH severity and never auto-merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    /// Raises (never lowers) the severity of the task type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The component or service the change belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The repository-relative directory or file the change should stay within.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_path: Option<String>,
    /// What is wrong or wanted, with any stack trace or error output.
    pub description: String,
    /// What the changed code receives (types, preconditions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_contract: Option<String>,
    /// What it must return or guarantee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_contract: Option<String>,
    /// Cases the tests must cover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_cases: Vec<TestCase>,
    /// Rules the change must respect (e.g. "no new dependencies").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// When the change must be rolled back after merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_condition: Option<String>,
    /// Issue labels (used by classification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    pub expected: String,
}

/// The JSON Schema of `Task`, as published in `docs/schemas/agent-task.schema.json`.
pub fn schema() -> String {
    let schema = schemars::schema_for!(Task);
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

impl Task {
    /// Parses and validates a structured task; errors name the file, line, column and field.
    pub fn from_json(text: &str, origin: &str) -> Result<Task> {
        let task: Task = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("task {origin}: {e}")))?;
        task.validate(origin)?;
        Ok(task)
    }

    /// A task from free text (an issue body): the first Markdown heading or line is the
    /// title; a `Labels: a, b` line gives labels; the whole text is the description.
    pub fn from_text(text: &str) -> Result<Task> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::invalid("the task text is empty"));
        }
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default();
        let title: String = first
            .trim_start_matches('#')
            .trim()
            .chars()
            .take(120)
            .collect();
        let labels = text
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                l.strip_prefix("Labels:")
                    .or_else(|| l.strip_prefix("labels:"))
            })
            .flat_map(|l| l.split(','))
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        Ok(Task {
            title,
            description: text.to_string(),
            labels,
            ..Task::default()
        })
    }

    /// A task from a file: JSON when it parses as a JSON object, free text otherwise.
    pub fn load(path: &Path, structured: bool) -> Result<Task> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        if structured {
            Task::from_json(&text, &path.display().to_string())
        } else {
            Task::from_text(&text)
        }
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let bad = |field: &str, why: &str| Error::invalid(format!("task {origin}: {field}: {why}"));
        if self.title.trim().is_empty() {
            return Err(bad("title", "must not be empty"));
        }
        if self.title.contains('\n') {
            return Err(bad("title", "must be one line"));
        }
        if self.description.trim().is_empty() {
            return Err(bad("description", "must not be empty"));
        }
        if let Some(m) = &self.module_path {
            let p = Path::new(m);
            if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
                return Err(bad(
                    "module_path",
                    "must be relative to the repository root, without `..`",
                ));
            }
        }
        for (i, t) in self.test_cases.iter().enumerate() {
            if t.name.trim().is_empty() {
                return Err(bad(&format!("test_cases[{i}].name"), "must not be empty"));
            }
        }
        Ok(())
    }

    /// The task as Markdown for the first prompt message.
    pub fn render(&self) -> String {
        let mut out = format!("# Task: {}\n\n{}\n", self.title, self.description.trim());
        let mut field = |name: &str, value: &Option<String>| {
            if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                out.push_str(&format!("\n**{name}:** {}\n", v.trim()));
            }
        };
        field("Component", &self.component);
        field("Module path", &self.module_path);
        field("Input contract", &self.input_contract);
        field("Output contract", &self.output_contract);
        field("Rollback condition", &self.rollback_condition);
        if !self.test_cases.is_empty() {
            out.push_str("\n**Test cases:**\n");
            for t in &self.test_cases {
                match &t.input {
                    Some(i) => {
                        out.push_str(&format!("- {}: given {i}, expect {}\n", t.name, t.expected))
                    }
                    None => out.push_str(&format!("- {}: expect {}\n", t.name, t.expected)),
                }
            }
        }
        out
    }

    /// The text classification reads.
    pub fn classification_text(&self) -> String {
        format!("{}\n{}", self.title, self.description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_tasks_are_validated_with_clear_errors() {
        let ok = r#"{"title": "Fix parse_port", "description": "It panics on an empty string.",
            "task_type": "bug_fix_isolated", "module_path": "src/config.rs",
            "test_cases": [{"name": "empty", "input": "\"\"", "expected": "an error"}],
            "constraints": ["no new dependencies"]}"#;
        let task = Task::from_json(ok, "t.json").unwrap();
        assert_eq!(task.task_type.as_deref(), Some("bug_fix_isolated"));
        assert!(
            task.render()
                .contains("- empty: given \"\", expect an error")
        );

        let cases = [
            (
                r#"{"title": "x", "description": "y", "priority": 1}"#,
                "unknown field `priority`",
            ),
            (r#"{"title": "x"}"#, "missing field `description`"),
            (
                r#"{"title": "", "description": "y"}"#,
                "title: must not be empty",
            ),
            (
                r#"{"title": "x", "description": "y", "module_path": "../etc"}"#,
                "module_path",
            ),
            (
                r#"{"title": "x", "description": "y", "severity": "urgent"}"#,
                "unknown variant `urgent`",
            ),
            ("{\"title\": \"x\",\n \"description\": 3}", "line 2"),
        ];
        for (input, want) in cases {
            let err = Task::from_json(input, "t.json").unwrap_err().to_string();
            assert!(
                err.contains(want) && err.contains("t.json"),
                "{input}: {err}"
            );
        }
    }

    #[test]
    fn free_text_takes_title_and_labels() {
        let task =
            Task::from_text("\n# Crash on empty config\n\nLabels: bug, p1\n\nSteps...").unwrap();
        assert_eq!(task.title, "Crash on empty config");
        assert_eq!(task.labels, ["bug", "p1"]);
        assert!(Task::from_text("  \n").is_err());
    }

    #[test]
    fn the_published_schema_is_the_generated_one() {
        let published = include_str!("../../docs/schemas/agent-task.schema.json");
        assert_eq!(
            published,
            schema(),
            "regenerate with `codectx agent schema`"
        );
    }
}
