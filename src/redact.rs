//! Secret redaction: gitleaks-style rules plus an entropy check, run locally on every text
//! before it is chunked (so neither the index, an embedding nor a pack ever holds a secret)
//! and again on everything a context pack or a span read emits.
//!
//! A secret is replaced by `[REDACTED:<rule>]`; a secret spanning lines keeps its line
//! breaks, so line numbers stay true to the file.

use regex::Regex;
use std::sync::OnceLock;

/// The marker every redaction starts with.
pub const MARKER_PREFIX: &str = "[REDACTED:";

/// One rule: a pattern, and which capture group is the secret (0: the whole match).
struct Rule {
    id: &'static str,
    pattern: &'static str,
    group: usize,
    /// The secret must also look random (Shannon entropy in bits per char at least this).
    min_entropy: f64,
    /// Words (any case) one of which a text must hold for the rule to run at all: one
    /// Aho-Corasick pass decides which rules run, as in gitleaks.
    keywords: &'static [&'static str],
}

/// The words a key naming a secret holds (`DB_PASSWORD`, `client_secret`, `apiKey`).
const SECRET_KEY_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "access_key",
    "accesskey",
    "auth_key",
    "authkey",
    "credential",
    "client_secret",
    "private_key",
    "privatekey",
];

/// The rules, most specific first. Patterns follow gitleaks' default config where it has one.
const RULES: &[Rule] = &[
    Rule {
        id: "private-key",
        pattern: r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY( BLOCK)?-----[\s\S]*?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY( BLOCK)?-----",
        group: 0,
        keywords: &["private key"],
        min_entropy: 0.0,
    },
    Rule {
        id: "aws-access-key-id",
        pattern: r"(?-u:\b)((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?-u:\b)",
        group: 1,
        keywords: &["akia", "asia", "abia", "acca", "a3t"],
        min_entropy: 3.0,
    },
    Rule {
        id: "aws-secret-access-key",
        pattern: r#"(?i)aws_?(?:secret)?_?(?:access)?_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})(?-u:\b)"#,
        group: 1,
        keywords: &["aws"],
        min_entropy: 3.5,
    },
    Rule {
        id: "github-token",
        pattern: r"(?-u:\b)((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})",
        group: 1,
        keywords: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        min_entropy: 3.0,
    },
    Rule {
        id: "gitlab-token",
        pattern: r"(?-u:\b)(glpat-[A-Za-z0-9_-]{20,})",
        group: 1,
        keywords: &["glpat-"],
        min_entropy: 3.0,
    },
    Rule {
        id: "slack-token",
        pattern: r"(?-u:\b)(xox[baprs]-[0-9A-Za-z-]{10,})",
        group: 1,
        keywords: &["xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-"],
        min_entropy: 3.0,
    },
    Rule {
        id: "slack-webhook",
        pattern: r"(https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/_-]{20,})",
        group: 1,
        keywords: &["hooks.slack.com"],
        min_entropy: 0.0,
    },
    Rule {
        id: "stripe-key",
        pattern: r"(?-u:\b)((?:sk|rk)_(?:test|live|prod)_[0-9a-zA-Z]{10,99})",
        group: 1,
        keywords: &[
            "sk_test_", "sk_live_", "sk_prod_", "rk_test_", "rk_live_", "rk_prod_",
        ],
        min_entropy: 3.0,
    },
    Rule {
        id: "google-api-key",
        pattern: r"(?-u:\b)(AIza[0-9A-Za-z_-]{35})",
        group: 1,
        keywords: &["aiza"],
        min_entropy: 3.0,
    },
    Rule {
        id: "anthropic-api-key",
        pattern: r"(?-u:\b)(sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{20,})",
        group: 1,
        keywords: &["sk-ant-"],
        min_entropy: 3.0,
    },
    Rule {
        id: "openai-api-key",
        pattern: r"(?-u:\b)(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}|sk-[A-Za-z0-9]{48})",
        group: 1,
        keywords: &["sk-"],
        min_entropy: 3.0,
    },
    Rule {
        id: "npm-token",
        pattern: r"(?-u:\b)(npm_[A-Za-z0-9]{36})(?-u:\b)",
        group: 1,
        keywords: &["npm_"],
        min_entropy: 3.0,
    },
    Rule {
        id: "sendgrid-key",
        pattern: r"(?-u:\b)(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})",
        group: 1,
        keywords: &["sg."],
        min_entropy: 3.0,
    },
    Rule {
        id: "azure-storage-key",
        pattern: r"(?i)AccountKey=([A-Za-z0-9+/]{86}==)",
        group: 1,
        keywords: &["accountkey="],
        min_entropy: 3.0,
    },
    Rule {
        id: "jwt",
        pattern: r"(?-u:\b)(ey[A-Za-z0-9_-]{10,}\.ey[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})",
        group: 1,
        keywords: &["eyj"],
        min_entropy: 3.0,
    },
    Rule {
        id: "password-in-url",
        pattern: r#"[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@'"\[\]]{1,100}:([^\s@/'"\[\]]{3,200})@[A-Za-z0-9.-]"#,
        group: 1,
        keywords: &["://"],
        min_entropy: 0.0,
    },
    Rule {
        id: "generic-secret",
        pattern: r#"(?i)(?:password|passwd|pwd|secret|token|api_?key|apikey|access_?key|auth_?key|credentials?|client_?secret|private_?key)[A-Za-z0-9_-]{0,20}["']?\s*(?::=|=>|==|=|:)\s*[bru]?["']([^"'\s]{8,200})["']"#,
        group: 1,
        keywords: SECRET_KEY_WORDS,
        min_entropy: 2.5,
    },
    // Key-value lines of configuration (YAML, INI, `.properties`, `.env`, compose files)
    // whose value is not quoted: `password: hunter2horse`, `DB_PASSWORD=s3cret`,
    // `spring.datasource.password=...`, `- POSTGRES_PASSWORD=...`. The value must end its
    // line (a trailing `# comment` aside), so code such as `password: str,` or
    // `token = make_token(32)` is filtered out below by what a value may contain.
    Rule {
        id: "config-secret",
        pattern: r##"(?mi)^[ \t]*(?:export[ \t]+|-[ \t]+)?["']?[A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|api_?key|apikey|access_?key|auth_?key|credentials?|client_?secret|private_?key)[A-Za-z0-9_.-]*["']?[ \t]*[:=][ \t]*([^\s'"#][^\s]{5,199})[ \t]*(?:[ \t]#.*)?\r?$"##,
        group: 1,
        keywords: SECRET_KEY_WORDS,
        min_entropy: 2.0,
    },
];

struct Compiled {
    keywords: aho_corasick::AhoCorasick,
    /// For each keyword pattern, the rule it belongs to.
    keyword_rule: Vec<usize>,
    rules: Vec<Regex>,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let mut words = Vec::new();
        let mut keyword_rule = Vec::new();
        for (i, rule) in RULES.iter().enumerate() {
            for word in rule.keywords {
                words.push(*word);
                keyword_rule.push(i);
            }
        }
        Compiled {
            keywords: aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&words)
                .expect("redaction keywords compile"),
            keyword_rule,
            rules: RULES
                .iter()
                .map(|r| Regex::new(r.pattern).expect("redaction rule compiles"))
                .collect(),
        }
    })
}

/// The characters of a base64- or token-like literal.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-')
}

/// Quoted literals of 32 to 256 token characters that look random (entropy at least 4.5
/// bits per char): a scan by hand, since a counted repetition that long defeats the regex
/// engine's DFA.
fn high_entropy_literals(text: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let q = bytes[i];
        if !matches!(q, b'"' | b'\'' | b'`') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < bytes.len() && end - start <= 256 && is_token_byte(bytes[end]) {
            end += 1;
        }
        let len = end - start;
        if end < bytes.len() && bytes[end] == q && (32..=256).contains(&len) {
            let value = &text[start..end];
            if entropy(value) >= 4.5 && !is_placeholder(value) {
                out.push(start..end);
            }
            i = end + 1;
        } else {
            i = start;
        }
    }
    out
}

/// Shannon entropy of `s` in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum()
}

/// Values that only look like secrets: placeholders, references, redaction markers.
fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    value.starts_with(MARKER_PREFIX)
        || value.contains("${")
        || value.contains("{{")
        || value.starts_with('<')
        || value.starts_with('$')
        || value.starts_with('%')
        || ["xxxx", "****", "example", "changeme", "placeholder", "your_", "your-"]
            .iter()
            .any(|p| lower.contains(p))
        // Dotted or slashed words (a module path, a file name, a URL) rather than a secret.
        || (value.contains('.') && value.split('.').all(|w| w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) && !value.starts_with("ey"))
}

/// A value made of words only (`identifier`, `user_name`, `HTTP_HEADER`, `camelCase`):
/// a name in code, not a credential.
fn is_wordlike(value: &str) -> bool {
    let letters_and_separators = value
        .chars()
        .all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-' || c == '.');
    let humps = value
        .as_bytes()
        .windows(2)
        .filter(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
        .count();
    letters_and_separators && humps <= 2
}

/// An unquoted right-hand side that is code (a call, a type, an index, a field list, a
/// number) rather than a configured secret.
fn is_code_not_a_value(value: &str) -> bool {
    value.contains(['(', ')', '[', ']', '{', '}', '<', '>', ';', '&', '|'])
        || value.ends_with(',')
        || value.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '_')
        // A URL (credentials inside one are `password-in-url`'s) or a file path.
        || value.contains("://")
        || ["/", "./", "../", "~/"].iter().any(|p| value.starts_with(p))
}

/// What a redaction pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    /// Secrets replaced, by rule id, in rule order.
    pub found: Vec<(&'static str, usize)>,
}

impl Redacted {
    pub fn count(&self) -> usize {
        self.found.iter().map(|(_, n)| n).sum()
    }
}

/// Replaces every secret in `text` by a marker naming its rule. Text with no candidate is
/// returned unchanged after one multi-pattern scan.
pub fn redact(text: &str) -> Redacted {
    let c = compiled();
    let mut active = vec![false; RULES.len()];
    for m in c.keywords.find_overlapping_iter(text) {
        active[c.keyword_rule[m.pattern().as_usize()]] = true;
    }
    let mut out = text.to_string();
    let mut found = Vec::new();
    for (i, rule) in RULES.iter().enumerate() {
        if !active[i] {
            continue;
        }
        let mut ranges = Vec::new();
        for caps in c.rules[i].captures_iter(&out) {
            let Some(m) = caps.get(rule.group) else {
                continue;
            };
            let value = m.as_str();
            if rule.id != "private-key"
                && (is_placeholder(value) || entropy(value) < rule.min_entropy)
            {
                continue;
            }
            // `token_type = "identifier"` names a word, not a secret.
            if matches!(rule.id, "generic-secret" | "config-secret") && is_wordlike(value) {
                continue;
            }
            if rule.id == "config-secret" {
                // The text before the value: the key and its separator.
                let start = caps.get(0).map_or(m.start(), |whole| whole.start());
                let key = out[start..m.start()].to_ascii_lowercase();
                // `tokenizer: cl100k_base` names a tokenizer, not a token.
                if is_code_not_a_value(value) || key.contains("tokeniz") || key.contains("tokenis")
                {
                    continue;
                }
            }
            ranges.push(m.range());
        }
        replace(&mut out, &ranges, rule.id, &mut found);
    }
    let literals = high_entropy_literals(&out);
    replace(&mut out, &literals, "high-entropy-string", &mut found);
    Redacted { text: out, found }
}

/// Replaces `ranges` (sorted, disjoint) of `out` by markers naming `rule`, keeping line
/// breaks so spans and line numbers stay true to the file.
fn replace(
    out: &mut String,
    ranges: &[std::ops::Range<usize>],
    rule: &'static str,
    found: &mut Vec<(&'static str, usize)>,
) {
    if ranges.is_empty() {
        return;
    }
    found.push((rule, ranges.len()));
    let mut next = String::with_capacity(out.len());
    let mut cursor = 0;
    for range in ranges {
        next.push_str(&out[cursor..range.start]);
        next.push_str(MARKER_PREFIX);
        next.push_str(rule);
        next.push(']');
        for _ in out[range.clone()].matches('\n') {
            next.push('\n');
        }
        cursor = range.end;
    }
    next.push_str(&out[cursor..]);
    *out = next;
}

/// How many redaction markers a text holds.
pub fn markers_in(text: &str) -> usize {
    text.matches(MARKER_PREFIX).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn check(input: &str, expected: Expect) {
        let r = redact(input);
        let rules: Vec<String> = r.found.iter().map(|(id, n)| format!("{id}x{n}")).collect();
        expected.assert_eq(&format!("{}\n-- {}", r.text, rules.join(" ")));
    }

    fn assert_left_alone(text: &str) {
        let r = redact(text);
        assert_eq!(r.text, text, "{:?}", r.found);
    }

    #[test]
    fn cloud_keys_and_tokens() {
        check(
            "AWS_ACCESS_KEY_ID = 'AKIAQYLPMN5HFIQR7XYZ'\naws_secret_access_key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq3kX9t2Lb\"\n",
            expect![[r#"
                AWS_ACCESS_KEY_ID = '[REDACTED:aws-access-key-id]'
                aws_secret_access_key = "[REDACTED:aws-secret-access-key]"

                -- aws-access-key-idx1 aws-secret-access-keyx1"#]],
        );
        check(
            "token: ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8\n",
            expect![[r#"
                token: [REDACTED:github-token]

                -- github-tokenx1"#]],
        );
    }

    #[test]
    fn private_key_blocks_keep_their_lines() {
        let input = "let k = \"-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1x\nabc\n-----END RSA PRIVATE KEY-----\";\nnext();\n";
        let r = redact(input);
        assert_eq!(r.text.lines().count(), input.lines().count());
        assert!(r.text.contains("[REDACTED:private-key]"));
        assert!(!r.text.contains("MIIEpAIBAAKCAQEA1x"));
        assert!(r.text.ends_with("next();\n"));
    }

    #[test]
    fn passwords_in_urls_and_assignments() {
        check(
            "DATABASE_URL = \"postgres://admin:s3cr3tP4ss@db.internal:5432/app\"\npassword = \"Tr0ub4dor&3xyz\"\n",
            expect![[r#"
                DATABASE_URL = "postgres://admin:[REDACTED:password-in-url]@db.internal:5432/app"
                password = "[REDACTED:generic-secret]"

                -- password-in-urlx1 generic-secretx1"#]],
        );
    }

    #[test]
    fn code_that_only_looks_like_secrets_is_left_alone() {
        for text in [
            "password = \"${DB_PASSWORD}\"\n",
            "token = \"<your token here>\"\n",
            "api_key = os.environ[\"API_KEY\"]\n",
            "password_field = \"user.password\"\n",
            "def check_password(password: str) -> bool:\n",
            "const HASH: &str = \"0123456789abcdef0123456789abcdef\";\n",
            "url = \"https://example.com/path?q=1\"\n",
            "secret = \"[REDACTED:generic-secret]\"\n",
            "token_type = \"identifier\"\n",
            "TOKEN_KIND: &str = \"whitespace-or-comment\";\n",
            "auth_header = \"Authorization\"\n",
        ] {
            assert_left_alone(text);
        }
    }

    #[test]
    fn unquoted_values_in_configuration_files() {
        check(
            "db:\n  password: hunter2horse\n  secret: Zq8vLm3Tn6Wp\nsecret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq3kX9t2Lb\n",
            expect![[r#"
                db:
                  password: [REDACTED:config-secret]
                  secret: [REDACTED:config-secret]
                secret_access_key: [REDACTED:config-secret]

                -- config-secretx3"#]],
        );
        check(
            "spring.datasource.password=Hunter2Horse!\nexport DB_PASSWORD=s3cr3t-pass # prod\nservices:\n  db:\n    environment:\n      POSTGRES_PASSWORD: pg-Pa55word\n      - MYSQL_ROOT_PASSWORD=r00tPass\n",
            expect![[r#"
                spring.datasource.password=[REDACTED:config-secret]
                export DB_PASSWORD=[REDACTED:config-secret] # prod
                services:
                  db:
                    environment:
                      POSTGRES_PASSWORD: [REDACTED:config-secret]
                      - MYSQL_ROOT_PASSWORD=[REDACTED:config-secret]

                -- config-secretx4"#]],
        );
    }

    #[test]
    fn code_that_names_secrets_without_holding_one_is_left_alone() {
        for text in [
            "    password: str,\n",
            "    api_key: Optional[str] = None\n",
            "    token: Token,\n",
            "secret = make_secret(32)\n",
            "password = self.password\n",
            "token = settings.API_TOKEN\n",
            "password: &'a str,\n",
            "token_expiry: 3600\n",
            "password_min_length: 8\n",
            "secret_name: my-app-secret\n",
            "password: ${DB_PASSWORD}\n",
            "password: $DB_PASSWORD\n",
            "token: {{ vault_token }}\n",
            "password:\n",
            "tokenizer: cl100k_base\n",
            "token_url: https://auth.acme.io/oauth/token\n",
            "secret_file: /etc/app/secret.pem\n",
        ] {
            assert_left_alone(text);
        }
    }

    #[test]
    fn a_token_in_a_url_leaves_one_clean_marker() {
        let r = redact(
            "git clone https://ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8:x-oauth-basic@github.com/o/r\n",
        );
        assert_eq!(
            r.text,
            "git clone https://[REDACTED:github-token]:x-oauth-basic@github.com/o/r\n"
        );
        for text in [
            "https://user:ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8@github.com\n",
            "https://[REDACTED:github-token]:hunter2horse@github.com\n",
        ] {
            let r = redact(text);
            assert_eq!(r.text.matches(MARKER_PREFIX).count(), 1, "{}", r.text);
            assert!(!r.text.contains("[REDACTED:[REDACTED"), "{}", r.text);
            assert!(!r.text.contains("ghp_A1b2"), "{}", r.text);
        }
    }

    #[test]
    fn entropy_is_bits_per_char() {
        assert_eq!(entropy(""), 0.0);
        assert_eq!(entropy("aaaa"), 0.0);
        assert!((entropy("abcd") - 2.0).abs() < 1e-9);
    }
}
