//! Chunkers that need no grammar: Markdown by headings, anything else by line windows.

use super::{Builder, Meta};
use crate::model::ChunkKind;

/// Cuts `[start, end)` into windows of whole lines: at most `window_lines` lines and about
/// `target_chunk_bytes` bytes each. The first window carries `meta.doc`, later ones do not.
pub fn windows(b: &mut Builder<'_>, start: usize, end: usize, meta: &Meta) {
    let max_lines = b.config.window_lines;
    let target = b.config.target_chunk_bytes;
    let mut meta = meta.clone();
    let mut window_start = start;
    let mut lines_in_window = 0;
    let mut pos = start;
    while pos < end {
        let line_end = b.text[pos..end]
            .find('\n')
            .map(|i| pos + i + 1)
            .unwrap_or(end);
        lines_in_window += 1;
        pos = line_end;
        if lines_in_window >= max_lines || pos - window_start >= target || pos >= end {
            b.emit(window_start, pos, &meta);
            meta.doc.clear();
            window_start = pos;
            lines_in_window = 0;
        }
    }
}

/// Splits Markdown at ATX headings outside fenced code; each section is a chunk whose symbol
/// is its heading and whose scope is the headings above it. Long sections become windows.
pub fn markdown(b: &mut Builder<'_>) {
    let text = b.text;
    let mut sections: Vec<(usize, usize, String)> = Vec::new(); // (start, level, title)
    let mut fence: Option<&str> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(open) = fence {
            if trimmed.starts_with(open) {
                fence = None;
            }
        } else if trimmed.starts_with("```") {
            fence = Some("```");
        } else if trimmed.starts_with("~~~") {
            fence = Some("~~~");
        } else if let Some((level, title)) = heading(line) {
            sections.push((offset, level, title));
        }
        offset += line.len();
    }

    let first = sections.first().map(|s| s.0).unwrap_or(text.len());
    if first > 0 {
        emit_section(b, 0, first, Meta::default());
    }
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, (start, level, title)) in sections.iter().enumerate() {
        let end = sections.get(i + 1).map(|s| s.0).unwrap_or(text.len());
        while stack.last().is_some_and(|(l, _)| l >= level) {
            stack.pop();
        }
        let scope = stack
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join(" > ");
        let meta = Meta {
            kind: Some(ChunkKind::Section),
            symbol: title.clone(),
            symbols: vec![title.clone()],
            scope,
            signature: text[*start..]
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            doc: String::new(),
        };
        emit_section(b, *start, end, meta);
        stack.push((*level, title.clone()));
    }
}

fn emit_section(b: &mut Builder<'_>, start: usize, end: usize, meta: Meta) {
    if end - start > b.config.max_chunk_bytes {
        windows(b, start, end, &meta);
    } else {
        b.emit(start, end, &meta);
    }
}

/// `## Title ##` -> (2, "Title").
fn heading(line: &str) -> Option<(usize, String)> {
    let line = line.trim_end();
    let indent = line.len() - line.trim_start().len();
    if indent > 3 {
        return None;
    }
    let rest = line.trim_start();
    let level = rest.bytes().take_while(|&c| c == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let after = &rest[level..];
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    let title = after.trim().trim_end_matches('#').trim();
    Some((level, title.to_string()))
}
