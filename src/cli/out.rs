//! The CLI's one writer of standard output: human text with its control characters made
//! visible, JSON as serialised, and a closed pipe (`codectx search ... | head -1`) ending
//! the output quietly instead of panicking.
//!
//! Architecture Invariant: nothing under `cli/` or `bench/` writes to stdout except through
//! [`text`], [`raw`] and the [`outln!`](crate::outln) / [`out!`](crate::out) macros.

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed (the reader went away): later output is dropped and
/// the command still finishes its work; `cli::main` then exits 0, as ripgrep does, so that
/// `codectx search ... | head` does not fail a `pipefail` script.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether stdout was closed under us.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Writes human text: control characters, the C1 controls and the bidirectional overrides
/// are escaped (a file holding `ESC ] 0 ; ... BEL` cannot retitle or clear the terminal,
/// nor a name hide what it is), newlines and tabs kept.
pub fn text(s: &str) {
    raw(&escape(s));
}

/// Writes text as it is: JSON (whose serialiser already escapes every control character).
pub fn raw(s: &str) {
    if closed() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(s.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes one JSON document and a newline, as serialised.
pub fn json(s: &str) {
    raw(s);
    raw("\n");
}

/// `s` with what a terminal would act on written out instead: `\x1b`, `\x07`, `\r`,
/// `\u{202e}`... Newlines and tabs are kept.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        // C0, DEL, C1.
        '\0'..='\x1f' | '\x7f'..='\u{9f}' => true,
        // Bidirectional embeddings, overrides and isolates ("Trojan Source").
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// `println!` for human output, through [`text`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::out::raw("\n")
    };
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        $crate::cli::out::text(&line)
    }};
}

/// `print!` for human output, through [`text`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::text(&format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::escape;
    use expect_test::expect;

    #[test]
    fn terminal_controls_are_shown_not_obeyed() {
        expect![[r#"a\x1b]0;pwned\x07\x1b[2J b\x0d c\x9b d\u{202e}e	f
g"#]]
        .assert_eq(&escape(
            "a\x1b]0;pwned\x07\x1b[2J b\r c\u{9b} d\u{202e}e\tf\ng",
        ));
        assert!(matches!(
            escape("plain text, ünïcode"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
