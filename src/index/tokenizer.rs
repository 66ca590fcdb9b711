//! The code-aware tokenizer: identifiers are indexed whole and split into their words
//! (`parseHttpRequest` -> `parsehttprequest`, `parse`, `http`, `request`).

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// The name the tokenizer is registered under in every index.
pub const CODE_TOKENIZER: &str = "code";

/// Identifiers longer than this (hashes, base64 blobs) are not indexed.
const MAX_WORD_BYTES: usize = 64;

#[derive(Clone, Default)]
pub struct CodeTokenizer {
    tokens: Vec<Token>,
}

pub struct CodeTokenStream<'a> {
    tokens: &'a [Token],
    index: usize,
}

impl Tokenizer for CodeTokenizer {
    type TokenStream<'a> = CodeTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CodeTokenStream<'a> {
        self.tokens.clear();
        tokenize_into(text, &mut self.tokens);
        CodeTokenStream {
            tokens: &self.tokens,
            index: usize::MAX,
        }
    }
}

impl TokenStream for CodeTokenStream<'_> {
    fn advance(&mut self) -> bool {
        self.index = self.index.wrapping_add(1);
        self.index < self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.index]
    }

    fn token_mut(&mut self) -> &mut Token {
        unreachable!("code tokens are not rewritten by filters")
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Tokenizes `text` into the terms the index stores (lowercase).
pub fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    tokenize_into(text, &mut tokens);
    tokens.into_iter().map(|t| t.text).collect()
}

fn tokenize_into(text: &str, out: &mut Vec<Token>) {
    let mut position = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if !is_word_char(c) {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, c)) = chars.peek() {
            if !is_word_char(c) {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let word = &text[start..end];
        if word.len() > MAX_WORD_BYTES || word.bytes().all(|b| b == b'_') {
            continue;
        }
        let parts = split_identifier(word);
        let whole = word.trim_matches('_');
        out.push(Token {
            offset_from: start,
            offset_to: end,
            position,
            text: whole.to_lowercase(),
            position_length: 1,
        });
        if parts.len() > 1 {
            for (i, (from, to)) in parts.iter().enumerate() {
                out.push(Token {
                    offset_from: start + from,
                    offset_to: start + to,
                    position: position + i,
                    text: word[*from..*to].to_lowercase(),
                    position_length: 1,
                });
            }
        }
        position += parts.len().max(1);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Lower,
    Upper,
    Digit,
    Other,
}

fn class(c: char) -> Class {
    if c.is_uppercase() {
        Class::Upper
    } else if c.is_lowercase() {
        Class::Lower
    } else if c.is_numeric() {
        Class::Digit
    } else {
        Class::Other
    }
}

/// Byte ranges of an identifier's words: split at `_`, lower->Upper, `HTTPServer` -> `HTTP`
/// `Server`, and letter<->digit boundaries.
pub fn split_identifier(word: &str) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = word.char_indices().collect();
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    for (idx, &(i, c)) in chars.iter().enumerate() {
        if c == '_' {
            if let Some(s) = start.take() {
                parts.push((s, i));
            }
            continue;
        }
        let Some(s) = start else {
            start = Some(i);
            continue;
        };
        let prev = class(chars[idx - 1].1);
        let cur = class(c);
        let next = chars.get(idx + 1).map(|&(_, n)| class(n));
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
    }
    if let Some(s) = start {
        parts.push((s, word.len()));
    }
    parts
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
}
