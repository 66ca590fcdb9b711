//! Decides, from a file's name and bytes alone, whether it is indexable text and in which language.

use super::SkipReason;
use crate::config::WalkConfig;
use crate::model::Language;

/// Bytes sniffed for NUL and for generated-code markers.
const SNIFF_BYTES: usize = 8192;

/// Lines at the top of a file searched for a generated-code marker.
const GENERATED_HEADER_LINES: usize = 12;

/// Lockfiles: machine-written, huge, useless as context.
const LOCKFILES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "poetry.lock",
    "Pipfile.lock",
    "uv.lock",
    "pdm.lock",
    "Gemfile.lock",
    "composer.lock",
    "go.sum",
    "packages.lock.json",
    "flake.lock",
    "mix.lock",
    "pubspec.lock",
    "Podfile.lock",
];

/// Is this file name one that holds secrets by convention?
pub fn is_secret_file(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    lower == ".env"
        || lower.starts_with(".env.")
        || lower.ends_with(".env")
        || matches!(
            lower.as_str(),
            ".netrc"
                | "_netrc"
                | ".npmrc"
                | ".pypirc"
                | "credentials"
                | "credentials.json"
                | ".git-credentials"
                | ".pgpass"
                | ".htpasswd"
                | ".envrc"
                | ".boto"
                | ".s3cfg"
                | ".dockercfg"
                | "terraform.tfstate"
                | "terraform.tfstate.backup"
        )
        || lower.ends_with(".tfstate")
        || lower.ends_with(".tfstate.backup")
        || matches!(
            lower.as_str(),
            "id_rsa" | "id_dsa" | "id_ecdsa" | "id_ed25519"
        )
        || [".pem", ".key", ".p12", ".pfx", ".jks", ".keystore"]
            .iter()
            .any(|ext| lower.ends_with(ext))
}

/// Checks that only need the name and size: secret files, lockfiles, the size cap.
pub fn check_name(
    file_name: &str,
    size: u64,
    config: &WalkConfig,
) -> Result<(), (SkipReason, String)> {
    if is_secret_file(file_name) {
        return Err((
            SkipReason::SecretFile,
            "secret-bearing file names are never indexed".into(),
        ));
    }
    if LOCKFILES.contains(&file_name) || file_name.ends_with(".lock") {
        return Err((SkipReason::Lockfile, "dependency lockfile".into()));
    }
    check_size(size, config)
}

/// The size cap, checked at walk time and again on the bytes read (a file can grow).
fn check_size(size: u64, config: &WalkConfig) -> Result<(), (SkipReason, String)> {
    if size > config.max_file_bytes {
        return Err((
            SkipReason::TooLarge,
            format!(
                "{size} bytes exceeds the cap of {} bytes",
                config.max_file_bytes
            ),
        ));
    }
    Ok(())
}

/// Decodes file bytes as text and rejects binary, minified and generated content.
pub fn decode(bytes: &[u8], config: &WalkConfig) -> Result<String, (SkipReason, String)> {
    check_size(bytes.len() as u64, config)?;
    let text = if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        utf8(rest)?
    } else if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        utf16(rest, u16::from_le_bytes)?
    } else if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        utf16(rest, u16::from_be_bytes)?
    } else {
        let sniff = &bytes[..bytes.len().min(SNIFF_BYTES)];
        if let Some(pos) = memchr_nul(sniff) {
            return Err((SkipReason::Binary, format!("NUL byte at offset {pos}")));
        }
        utf8(bytes)?
    };
    check_shape(&text, config)?;
    Ok(text)
}

fn memchr_nul(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

fn utf8(bytes: &[u8]) -> Result<String, (SkipReason, String)> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => Err((
            SkipReason::InvalidEncoding,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )),
    }
}

fn utf16(bytes: &[u8], read: fn([u8; 2]) -> u16) -> Result<String, (SkipReason, String)> {
    if !bytes.len().is_multiple_of(2) {
        return Err((SkipReason::InvalidEncoding, "odd length for UTF-16".into()));
    }
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| read([c[0], c[1]])).collect();
    String::from_utf16(&units).map_err(|_| (SkipReason::InvalidEncoding, "invalid UTF-16".into()))
}

/// Rejects minified and generated text by its shape and markers.
fn check_shape(text: &str, config: &WalkConfig) -> Result<(), (SkipReason, String)> {
    // Generators put their marker in a header comment near the top of the file.
    for line in text.lines().take(GENERATED_HEADER_LINES) {
        let l = line.trim_start();
        let is_comment = ["//", "#", "/*", "*", "<!--", "--", ";", "%"]
            .iter()
            .any(|c| l.starts_with(c));
        if !is_comment {
            continue;
        }
        for marker in [
            "@generated",
            "DO NOT EDIT",
            "Code generated by",
            "<auto-generated",
        ] {
            if l.contains(marker) {
                return Err((SkipReason::Generated, format!("header says {marker:?}")));
            }
        }
    }
    let mut lines = 0usize;
    let mut longest = 0usize;
    for line in text.lines() {
        lines += 1;
        longest = longest.max(line.len());
    }
    if longest > config.max_line_bytes {
        return Err((
            SkipReason::Minified,
            format!(
                "a line of {longest} bytes (limit {})",
                config.max_line_bytes
            ),
        ));
    }
    if lines > 0 && text.len() > 1024 && text.len() / lines > config.max_mean_line_bytes {
        return Err((
            SkipReason::Minified,
            format!(
                "mean line length {} bytes (limit {})",
                text.len() / lines,
                config.max_mean_line_bytes
            ),
        ));
    }
    Ok(())
}

/// The largest char boundary at or below `index`.
pub fn floor_char_boundary(s: &str, mut index: usize) -> usize {
    if index >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The language of a file, by name and extension, then by shebang.
pub fn detect_language(file_name: &str, text: &str) -> Language {
    let lower = file_name.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let by_ext = match ext {
        "rs" => Some(Language::Rust),
        "py" | "pyi" | "pyw" => Some(Language::Python),
        "js" | "mjs" | "cjs" | "jsx" => Some(Language::JavaScript),
        "ts" | "mts" | "cts" => Some(Language::TypeScript),
        "tsx" => Some(Language::Tsx),
        "go" => Some(Language::Go),
        "java" => Some(Language::Java),
        "c" | "h" => Some(Language::C),
        "cc" | "cpp" | "cxx" | "c++" | "hpp" | "hh" | "hxx" | "h++" | "ipp" | "tpp" => {
            Some(Language::Cpp)
        }
        "cs" => Some(Language::CSharp),
        "rb" | "rake" | "gemspec" => Some(Language::Ruby),
        "php" | "phtml" => Some(Language::Php),
        "sh" | "bash" | "zsh" | "ksh" => Some(Language::Bash),
        "md" | "markdown" | "mdx" => Some(Language::Markdown),
        "toml" | "yaml" | "yml" | "json" | "jsonc" | "json5" | "ini" | "cfg" | "conf" | "xml"
        | "properties" | "proto" | "graphql" | "gql" | "sql" | "tf" | "hcl" | "nix" | "gradle"
        | "cmake" | "mk" => Some(Language::Config),
        _ => None,
    };
    if let Some(lang) = by_ext {
        return lang;
    }
    match lower.as_str() {
        "rakefile" | "gemfile" | "guardfile" | "vagrantfile" => return Language::Ruby,
        ".bashrc" | ".bash_profile" | ".profile" | ".zshrc" => return Language::Bash,
        "makefile" | "gnumakefile" | "dockerfile" | "cmakelists.txt" | ".gitignore"
        | ".gitattributes" | ".editorconfig" => return Language::Config,
        _ => {}
    }
    if let Some(first) = text.lines().next().filter(|l| l.starts_with("#!")) {
        if first.contains("python") {
            return Language::Python;
        }
        if first.contains("node") || first.contains("deno") {
            return Language::JavaScript;
        }
        if first.contains("ruby") {
            return Language::Ruby;
        }
        if first.contains("php") {
            return Language::Php;
        }
        if ["sh", "bash", "zsh", "ksh", "dash"]
            .iter()
            .any(|s| first.ends_with(&format!("/{s}")) || first.ends_with(&format!(" {s}")))
        {
            return Language::Bash;
        }
    }
    Language::Text
}
