//! The code-aware tokenizer: identifiers are indexed whole and split into their words
//! (`parseHttpRequest` -> `parsehttprequest`, `parse`, `http`, `request`).

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// The name the tokenizer is registered under in every index.
pub const CODE_TOKENIZER: &str = "code";

/// Identifiers longer than this (hashes, base64 blobs) are not indexed.
const MAX_WORD_BYTES: usize = 64;

#[derive(Clone, Default)]
pub struct CodeTokenizer;

/// Produces tokens lazily into one reused `Token`: per word, the whole identifier, then its
/// parts when it has more than one.
pub struct CodeTokenStream<'a> {
    text: &'a str,
    /// Byte offset where the search for the next word starts.
    cursor: usize,
    /// The current word's span and its parts (relative to the word).
    word: (usize, usize),
    parts: Vec<(usize, usize)>,
    /// Next part to emit; `parts.len()` when the word is done.
    next_part: usize,
    position: usize,
    token: Token,
}

impl Tokenizer for CodeTokenizer {
    type TokenStream<'a> = CodeTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CodeTokenStream<'a> {
        CodeTokenStream::new(text)
    }
}

impl<'a> CodeTokenStream<'a> {
    fn new(text: &'a str) -> Self {
        CodeTokenStream {
            text,
            cursor: 0,
            word: (0, 0),
            parts: Vec::new(),
            next_part: 0,
            position: 0,
            token: Token::default(),
        }
    }

    /// Finds the next indexable word and emits it whole.
    fn next_word(&mut self) -> bool {
        let bytes = self.text.as_bytes();
        loop {
            // Skip to a word start; ASCII fast path, Unicode checked per char.
            let rest = &self.text[self.cursor..];
            let Some((offset, _)) = rest.char_indices().find(|&(_, c)| is_word_char(c)) else {
                self.cursor = self.text.len();
                return false;
            };
            let start = self.cursor + offset;
            let mut end = start;
            while end < bytes.len() {
                if bytes[end].is_ascii() {
                    if bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' {
                        end += 1;
                        continue;
                    }
                    break;
                }
                let c = self.text[end..].chars().next().unwrap_or(' ');
                if !is_word_char(c) {
                    break;
                }
                end += c.len_utf8();
            }
            self.cursor = end;
            let word = &self.text[start..end];
            if word.len() > MAX_WORD_BYTES || word.bytes().all(|b| b == b'_') {
                continue;
            }
            split_identifier_into(word, &mut self.parts);
            self.word = (start, end);
            self.next_part = if self.parts.len() > 1 {
                0
            } else {
                self.parts.len()
            };
            let whole = word.trim_matches('_');
            self.set_token(start, end, whole, self.position);
            self.position += self.parts.len().max(1);
            return true;
        }
    }

    fn set_token(&mut self, from: usize, to: usize, text: &str, position: usize) {
        self.token.offset_from = from;
        self.token.offset_to = to;
        self.token.position = position;
        self.token.text.clear();
        if text.is_ascii() {
            self.token.text.push_str(text);
            self.token.text.make_ascii_lowercase();
        } else {
            self.token
                .text
                .extend(text.chars().flat_map(char::to_lowercase));
        }
    }
}

impl TokenStream for CodeTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.next_part < self.parts.len() {
            let (from, to) = self.parts[self.next_part];
            let base = self.word.0;
            let first_position = self.position - self.parts.len();
            let text = self.text;
            self.set_token(
                base + from,
                base + to,
                &text[base + from..base + to],
                first_position + self.next_part,
            );
            self.next_part += 1;
            return true;
        }
        self.next_word()
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Tokenizes `text` into the terms the index stores (lowercase).
pub fn tokenize(text: &str) -> Vec<String> {
    let mut stream = CodeTokenStream::new(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token.text.clone());
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Lower,
    Upper,
    Digit,
    Underscore,
    Other,
}

fn class(c: char) -> Class {
    if c == '_' {
        Class::Underscore
    } else if c.is_uppercase() {
        Class::Upper
    } else if c.is_lowercase() {
        Class::Lower
    } else if c.is_numeric() {
        Class::Digit
    } else {
        Class::Other
    }
}

fn class_ascii(b: u8) -> Class {
    match b {
        b'_' => Class::Underscore,
        b'A'..=b'Z' => Class::Upper,
        b'a'..=b'z' => Class::Lower,
        b'0'..=b'9' => Class::Digit,
        _ => Class::Other,
    }
}

/// Byte ranges of an identifier's words: split at `_`, lower->Upper, `HTTPServer` -> `HTTP`
/// `Server`, and letter<->digit boundaries.
pub fn split_identifier(word: &str) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    split_identifier_into(word, &mut parts);
    parts
}

fn split_identifier_into(word: &str, parts: &mut Vec<(usize, usize)>) {
    parts.clear();
    // Nearly every identifier is ASCII: classify its bytes without decoding characters or
    // asking Unicode for their case.
    if word.is_ascii() {
        let classes = word.bytes().enumerate().map(|(i, b)| (i, class_ascii(b)));
        split_classes(classes, word.len(), parts)
    } else {
        let classes = word.char_indices().map(|(i, c)| (i, class(c)));
        split_classes(classes, word.len(), parts)
    }
}

/// Splits a word given as (byte offset, class) per character.
fn split_classes(
    classes: impl Iterator<Item = (usize, Class)>,
    len: usize,
    parts: &mut Vec<(usize, usize)>,
) {
    let mut classes = classes.peekable();
    let mut prev = Class::Other;
    let mut start: Option<usize> = None;
    while let Some((i, cur)) = classes.next() {
        if cur == Class::Underscore {
            if let Some(s) = start.take() {
                parts.push((s, i));
            }
            continue;
        }
        let Some(s) = start else {
            start = Some(i);
            prev = cur;
            continue;
        };
        let next = classes.peek().map(|&(_, n)| n);
        let boundary = match (prev, cur) {
            (Class::Lower, Class::Upper) => true,
            (Class::Upper, Class::Upper) => next == Some(Class::Lower),
            (Class::Digit, Class::Lower | Class::Upper) => true,
            (Class::Lower | Class::Upper, Class::Digit) => true,
            _ => false,
        };
        if boundary {
            parts.push((s, i));
            start = Some(i);
        }
        prev = cur;
    }
    if let Some(s) = start {
        parts.push((s, len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn check(input: &str, expect: Expect) {
        expect.assert_eq(&tokenize(input).join(" "));
    }

    #[test]
    fn splits_identifiers_and_keeps_them_whole() {
        check(
            "parseHttpRequest",
            expect!["parsehttprequest parse http request"],
        );
        check(
            "parse_http_request",
            expect!["parse_http_request parse http request"],
        );
        check("HTTPServer2", expect!["httpserver2 http server 2"]);
        check("__init__", expect!["init"]);
        check("x", expect!["x"]);
        check(
            "fn read_file(p: &Path)",
            expect!["fn read_file read file p path"],
        );
        check("getX", expect!["getx get x"]);
        check("naïveCafé", expect!["naïvecafé naïve café"]);
        check(
            "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6 ok",
            expect!["ok"],
        );
    }

    /// The ASCII fast path classifies exactly as the character-based one does.
    #[test]
    fn the_ascii_splitter_agrees_with_the_general_one() {
        for word in [
            "parseHttpRequest",
            "parse_http_request",
            "HTTPServer2",
            "__init__",
            "x",
            "getX",
            "ABC",
            "abc9",
            "9abc",
            "a__b",
            "_",
            "IOError_",
            "v2Beta3XML",
            "snake_Case_MIX",
        ] {
            let mut ascii = Vec::new();
            split_identifier_into(word, &mut ascii);
            let mut general = Vec::new();
            let classes = word.char_indices().map(|(i, c)| (i, class(c)));
            split_classes(classes, word.len(), &mut general);
            assert_eq!(ascii, general, "{word}");
        }
    }
}
