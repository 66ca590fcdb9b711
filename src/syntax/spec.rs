//! Per-language chunking rules as data: grammar, definition queries, and how captured nodes
//! are normalised into chunkable definitions.

use crate::model::{ChunkKind, Language};
use std::sync::{Arc, OnceLock};

/// How one language is chunked. Everything language-specific lives in these tables.
pub struct LanguageSpec {
    pub language: Language,
    pub grammar: tree_sitter_language::LanguageFn,
    /// The grammar's own tags query (definition captures are used, references ignored).
    pub tags_query: &'static [&'static str],
    /// Our additions: definitions the tags query does not capture (impls, enums, constructors...).
    pub extra_query: &'static str,
    /// A captured node of kind `.0` is replaced by its nearest ancestor of a kind in `.1`
    /// (e.g. a C `function_declarator` by its `function_definition`).
    pub lift: &'static [(&'static str, &'static [&'static str])],
    /// Parents that wrap a definition and belong to its chunk (decorators, `export`, templates).
    pub wrappers: &'static [&'static str],
    /// The docstring is the first statement of the body (Python).
    pub docstring_in_body: bool,
    /// The grammar's `node-types.json`: which kinds may hold which, so the chunker's walk
    /// skips subtrees where no definition can start.
    pub node_types: &'static str,
}

const C_LIFT: &[(&str, &[&str])] = &[(
    "function_declarator",
    &["function_definition", "declaration", "field_declaration"],
)];
const JS_LIFT: &[(&str, &[&str])] = &[
    (
        "variable_declarator",
        &["lexical_declaration", "variable_declaration"],
    ),
    ("assignment_expression", &["expression_statement"]),
];
const JS_WRAPPERS: &[&str] = &["export_statement"];
const JS_EXTRA: &str = r#"
(method_definition name: (property_identifier) @name) @definition.method
"#;
/// TypeScript's tags extend JavaScript's.
const TS_TAGS: &[&str] = &[
    tree_sitter_javascript::TAGS_QUERY,
    tree_sitter_typescript::TAGS_QUERY,
];
const TS_EXTRA: &str = r#"
(method_definition name: (property_identifier) @name) @definition.method
(type_alias_declaration name: (type_identifier) @name) @definition.type
(enum_declaration name: (identifier) @name) @definition.enum
(internal_module name: (_) @name) @definition.module
"#;

static SPECS: &[LanguageSpec] = &[
    LanguageSpec {
        language: Language::Rust,
        grammar: tree_sitter_rust::LANGUAGE,
        tags_query: &[tree_sitter_rust::TAGS_QUERY],
        extra_query: r#"
(impl_item type: (_) @name) @definition.impl
(const_item name: (identifier) @name) @definition.constant
(static_item name: (identifier) @name) @definition.constant
"#,
        lift: &[],
        wrappers: &[],
        docstring_in_body: false,
        node_types: tree_sitter_rust::NODE_TYPES,
    },
    LanguageSpec {
        language: Language::Python,
        grammar: tree_sitter_python::LANGUAGE,
        tags_query: &[tree_sitter_python::TAGS_QUERY],
        extra_query: "",
        lift: &[("assignment", &["expression_statement"])],
        wrappers: &["decorated_definition"],
        docstring_in_body: true,
        node_types: tree_sitter_python::NODE_TYPES,
    },
    LanguageSpec {
        language: Language::JavaScript,
        grammar: tree_sitter_javascript::LANGUAGE,
        tags_query: &[tree_sitter_javascript::TAGS_QUERY],
        extra_query: JS_EXTRA,
        lift: JS_LIFT,
        wrappers: JS_WRAPPERS,
        docstring_in_body: false,
        node_types: tree_sitter_javascript::NODE_TYPES,
    },
    LanguageSpec {
        language: Language::TypeScript,
        grammar: tree_sitter_typescript::LANGUAGE_TYPESCRIPT,
        tags_query: TS_TAGS,
        extra_query: TS_EXTRA,
        lift: JS_LIFT,
        wrappers: JS_WRAPPERS,
        docstring_in_body: false,
        node_types: tree_sitter_typescript::TYPESCRIPT_NODE_TYPES,
    },
    LanguageSpec {
        language: Language::Tsx,
        grammar: tree_sitter_typescript::LANGUAGE_TSX,
        tags_query: TS_TAGS,
        extra_query: TS_EXTRA,
        lift: JS_LIFT,
        wrappers: JS_WRAPPERS,
        docstring_in_body: false,
        node_types: tree_sitter_typescript::TSX_NODE_TYPES,
    },
    LanguageSpec {
        language: Language::Go,
        grammar: tree_sitter_go::LANGUAGE,
        tags_query: &[tree_sitter_go::TAGS_QUERY],
        extra_query: "",
        lift: &[("type_spec", &["type_declaration"])],
        wrappers: &[],
        docstring_in_body: false,
        node_types: tree_sitter_go::NODE_TYPES,
    },
    LanguageSpec {
        language: Language::Java,
        grammar: tree_sitter_java::LANGUAGE,
        tags_query: &[tree_sitter_java::TAGS_QUERY],
        extra_query: r#"
(constructor_declaration name: (identifier) @name) @definition.method
(enum_declaration name: (identifier) @name) @definition.enum
(record_declaration name: (identifier) @name) @definition.class
"#,
        lift: &[],
        wrappers: &[],
        docstring_in_body: false,
        node_types: tree_sitter_java::NODE_TYPES,
    },
    LanguageSpec {
        language: Language::C,
        grammar: tree_sitter_c::LANGUAGE,
        tags_query: &[tree_sitter_c::TAGS_QUERY],
        extra_query: "",
        lift: C_LIFT,
        wrappers: &[],
        docstring_in_body: false,
        node_types: tree_sitter_c::NODE_TYPES,
    },
    LanguageSpec {
        language: Language::Cpp,
        grammar: tree_sitter_cpp::LANGUAGE,
        tags_query: &[tree_sitter_cpp::TAGS_QUERY],
        extra_query: r#"
(namespace_definition name: (namespace_identifier) @name) @definition.module
"#,
        lift: C_LIFT,
        wrappers: &["template_declaration"],
        docstring_in_body: false,
        node_types: tree_sitter_cpp::NODE_TYPES,
    },
    LanguageSpec {
        language: Language::CSharp,
        grammar: tree_sitter_c_sharp::LANGUAGE,
        tags_query: &[tree_sitter_c_sharp::TAGS_QUERY],
        extra_query: r#"
(struct_declaration name: (identifier) @name) @definition.class
(enum_declaration name: (identifier) @name) @definition.enum
(record_declaration name: (identifier) @name) @definition.class
(constructor_declaration name: (identifier) @name) @definition.method
(property_declaration name: (identifier) @name) @definition.method
(namespace_declaration name: (qualified_name) @name) @definition.module
(file_scoped_namespace_declaration name: (_) @name) @definition.module
"#,
        lift: &[],
        wrappers: &[],
        docstring_in_body: false,
        node_types: tree_sitter_c_sharp::NODE_TYPES,
    },
    LanguageSpec {
        language: Language::Ruby,
        grammar: tree_sitter_ruby::LANGUAGE,
        tags_query: &[tree_sitter_ruby::TAGS_QUERY],
        extra_query: "",
        lift: &[],
        wrappers: &[],
        docstring_in_body: false,
        node_types: tree_sitter_ruby::NODE_TYPES,
    },
    LanguageSpec {
        language: Language::Php,
        grammar: tree_sitter_php::LANGUAGE_PHP,
        tags_query: &[tree_sitter_php::TAGS_QUERY],
        extra_query: r#"
(enum_declaration name: (name) @name) @definition.enum
"#,
        lift: &[],
        wrappers: &[],
        docstring_in_body: false,
        node_types: tree_sitter_php::PHP_NODE_TYPES,
    },
    LanguageSpec {
        language: Language::Bash,
        grammar: tree_sitter_bash::LANGUAGE,
        tags_query: &[],
        extra_query: r#"
(function_definition name: (word) @name) @definition.function
"#,
        lift: &[],
        wrappers: &[],
        docstring_in_body: false,
        node_types: tree_sitter_bash::NODE_TYPES,
    },
];

/// The chunk kind a `@definition.X` capture name stands for; `None` for kinds we do not chunk.
pub fn kind_of_capture(suffix: &str) -> Option<ChunkKind> {
    Some(match suffix {
        "function" => ChunkKind::Function,
        "method" => ChunkKind::Method,
        "class" => ChunkKind::Class,
        "interface" => ChunkKind::Interface,
        "module" => ChunkKind::Module,
        "macro" => ChunkKind::Macro,
        "type" => ChunkKind::Type,
        "enum" => ChunkKind::Enum,
        "impl" => ChunkKind::Impl,
        "constant" => ChunkKind::Constant,
        _ => return None,
    })
}

/// A more precise kind, from the node's own grammar kind, where the capture name is coarse.
pub fn kind_of_node(node_kind: &str) -> Option<ChunkKind> {
    Some(match node_kind {
        "struct_item" | "union_item" | "struct_specifier" | "union_specifier"
        | "struct_declaration" => ChunkKind::Struct,
        "enum_item" | "enum_specifier" | "enum_declaration" => ChunkKind::Enum,
        "trait_item" | "trait_declaration" => ChunkKind::Trait,
        "type_item" | "type_definition" | "type_alias_declaration" | "type_declaration" => {
            ChunkKind::Type
        }
        "impl_item" => ChunkKind::Impl,
        "interface_declaration" => ChunkKind::Interface,
        "method_declaration" | "method_definition" | "constructor_declaration" => ChunkKind::Method,
        _ => return None,
    })
}

/// A language's spec with its queries compiled once.
pub struct CompiledSpec {
    pub spec: &'static LanguageSpec,
    pub ts_language: tree_sitter::Language,
    pub query: tree_sitter::Query,
    /// Capture index -> chunk kind, for `@definition.*` captures.
    pub definition_captures: Vec<Option<ChunkKind>>,
    pub name_capture: Option<u32>,
    /// Node kind id -> whether a definition pattern can start at a node of that kind; `None`
    /// when some pattern's root cannot be read off its text (the chunker then runs the
    /// query over the whole tree instead of at these nodes only).
    pub start_kinds: Option<Vec<bool>>,
    /// Node kind id -> the fewest levels below a node of that kind at which a start kind
    /// can occur, per the grammar's node types (`u8::MAX`: never). Kinds the node types do
    /// not describe read 1.
    pub start_below: Vec<u8>,
}

/// The compiled spec for a language, or `None` for languages chunked without a grammar.
///
/// Each language's queries compile once per process, on first use of that language (all
/// thirteen together take ~0.3 s, which a one-file reindex must not pay); a query that
/// fails to compile is a bug in the tables above and is reported by the
/// `every_spec_compiles` test.
pub fn compiled(language: Language) -> Option<Arc<CompiledSpec>> {
    type Slot = OnceLock<Result<Arc<CompiledSpec>, String>>;
    static CACHE: OnceLock<Vec<(&'static LanguageSpec, Slot)>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| SPECS.iter().map(|spec| (spec, OnceLock::new())).collect());
    let (spec, slot) = cache.iter().find(|(spec, _)| spec.language == language)?;
    match slot.get_or_init(|| compile(spec).map(Arc::new)) {
        Ok(spec) => Some(Arc::clone(spec)),
        Err(e) => {
            tracing::error!("the definition query for {language} does not compile: {e}");
            None
        }
    }
}

/// Compiles a spec's queries; exposed for the tests that keep the tables honest.
pub fn compile(spec: &'static LanguageSpec) -> Result<CompiledSpec, String> {
    let ts_language: tree_sitter::Language = spec.grammar.into();
    let mut source = spec.tags_query.join("\n");
    source.push('\n');
    source.push_str(spec.extra_query);
    let mut query = tree_sitter::Query::new(&ts_language, &source)
        .map_err(|e| format!("{}: {e}", spec.language))?;
    // Tags queries also capture references; matching them is most of the query's cost and
    // the chunker never reads them.
    let mut roots: Option<Vec<String>> = Some(Vec::new());
    for i in 0..query.pattern_count() {
        let text = &source[query.start_byte_for_pattern(i)..query.end_byte_for_pattern(i)];
        if !text.contains("@definition.") {
            query.disable_pattern(i);
            continue;
        }
        roots = match (roots, pattern_roots(text)) {
            (Some(mut all), Some(these)) => {
                all.extend(these);
                Some(all)
            }
            _ => None,
        };
    }
    let start_kinds: Option<Vec<bool>> = roots.map(|roots| {
        (0..ts_language.node_kind_count())
            .map(|id| {
                let id = id as u16;
                ts_language.node_kind_is_named(id)
                    && ts_language
                        .node_kind_for_id(id)
                        .is_some_and(|kind| roots.iter().any(|r| r == kind))
            })
            .collect()
    });
    let definition_captures = query
        .capture_names()
        .iter()
        .map(|name| name.strip_prefix("definition.").and_then(kind_of_capture))
        .collect();
    let name_capture = query.capture_index_for_name("name");
    let start_below = match &start_kinds {
        Some(kinds) => levels_to_start(&ts_language, spec.node_types, kinds)
            .map_err(|e| format!("{}: node types: {e}", spec.language))?,
        None => Vec::new(),
    };
    Ok(CompiledSpec {
        spec,
        ts_language,
        query,
        definition_captures,
        name_capture,
        start_kinds,
        start_below,
    })
}

/// For every node kind, the fewest levels below it at which a start kind can occur, from
/// the grammar's `node-types.json` (fields and children, supertypes expanded to their
/// subtypes, which are hidden and add no level).
fn levels_to_start(
    language: &tree_sitter::Language,
    node_types: &str,
    start_kinds: &[bool],
) -> Result<Vec<u8>, String> {
    use std::collections::HashMap;
    const NEVER: u8 = u8::MAX;
    let types: Vec<serde_json::Value> =
        serde_json::from_str(node_types).map_err(|e| e.to_string())?;
    let name_of = |v: &serde_json::Value| -> Option<String> {
        v.get("named")?
            .as_bool()?
            .then(|| v.get("type")?.as_str().map(str::to_string))?
    };
    // Named kind -> the named kinds (or supertypes) that may appear directly inside it.
    let mut inside: HashMap<String, Vec<String>> = HashMap::new();
    let mut subtypes: HashMap<String, Vec<String>> = HashMap::new();
    for t in &types {
        let Some(name) = name_of(t) else { continue };
        if let Some(subs) = t.get("subtypes").and_then(|v| v.as_array()) {
            subtypes.insert(name.clone(), subs.iter().filter_map(name_of).collect());
        }
        let mut kids = Vec::new();
        let fields = t.get("fields").and_then(|f| f.as_object());
        let lists = fields
            .into_iter()
            .flat_map(|f| f.values())
            .chain(t.get("children"));
        for list in lists {
            if let Some(ts) = list.get("types").and_then(|v| v.as_array()) {
                kids.extend(ts.iter().filter_map(name_of));
            }
        }
        inside.insert(name, kids);
    }
    let is_start = |name: &str| {
        (0..language.node_kind_count() as u16).any(|id| {
            start_kinds.get(id as usize) == Some(&true)
                && language.node_kind_for_id(id) == Some(name)
        })
    };
    let starts: std::collections::HashSet<&str> = inside
        .keys()
        .chain(subtypes.keys())
        .map(String::as_str)
        .filter(|n| is_start(n))
        .collect();
    // below[k]: levels from k down to the nearest start kind strictly inside it. Relax to
    // a fixpoint; every value only falls and is capped, so this ends.
    let mut below: HashMap<&str, u8> = inside.keys().map(|k| (k.as_str(), NEVER)).collect();
    let at_or_below = |name: &str, below: &HashMap<&str, u8>| -> u8 {
        fn walk(
            name: &str,
            below: &HashMap<&str, u8>,
            subtypes: &HashMap<String, Vec<String>>,
            starts: &std::collections::HashSet<&str>,
            depth: usize,
        ) -> u8 {
            if starts.contains(name) {
                return 0;
            }
            if let Some(subs) = subtypes.get(name) {
                if depth > 8 {
                    return 0;
                }
                return subs
                    .iter()
                    .map(|s| walk(s, below, subtypes, starts, depth + 1))
                    .min()
                    .unwrap_or(NEVER);
            }
            below.get(name).copied().unwrap_or(NEVER)
        }
        walk(name, below, &subtypes, &starts, 0)
    };
    loop {
        let mut changed = false;
        for (name, kids) in &inside {
            let best = kids
                .iter()
                .map(|k| at_or_below(k, &below).saturating_add(1))
                .min()
                .unwrap_or(NEVER);
            let slot = below.get_mut(name.as_str()).expect("every kind has a slot");
            if best < *slot {
                *slot = best;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Ok((0..language.node_kind_count() as u16)
        .map(|id| {
            let described = language
                .node_kind_is_named(id)
                .then(|| language.node_kind_for_id(id))
                .flatten()
                .and_then(|name| below.get(name).copied());
            match described {
                Some(levels) => levels,
                // Anonymous tokens hold nothing; kinds the node types leave out are walked.
                None if !language.node_kind_is_named(id) => NEVER,
                None => 1,
            }
        })
        .collect())
}

/// The node kinds a query pattern can start matching at, read off its text: the pattern's
/// own node, each alternative of an alternation, or the one required member of a group of
/// siblings (`(comment)* @doc . (function_declaration ...)` starts at the function).
/// `None` for a shape a single node cannot start (two required siblings, a wildcard or
/// anonymous root): such a query is matched over the whole tree.
pub fn pattern_roots(pattern: &str) -> Option<Vec<String>> {
    let tokens = query_tokens(pattern);
    let mut pos = 0;
    let expr = parse_expr(&tokens, &mut pos)?;
    match expr {
        Expr::Pattern { roots, .. } => Some(roots),
        Expr::Skip => None,
    }
}

#[derive(Debug, PartialEq)]
enum Tok<'a> {
    Open,
    Close,
    OpenAlt,
    CloseAlt,
    Word(&'a str),
    /// `field:`, `@capture`, `!field`, `.` and string literals: nothing that starts a match.
    Other,
    /// `*` or `?`: the item before may be absent.
    Optional,
    /// `#predicate!` or `#predicate?`.
    Predicate,
}

fn query_tokens(text: &str) -> Vec<Tok<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Words run over `-` and `.` (`definition.method`); predicate names end in `?` or `!`.
    let word_end = |mut j: usize, predicate: bool| {
        while j < bytes.len()
            && (bytes[j].is_ascii_alphanumeric()
                || matches!(bytes[j], b'_' | b'-' | b'.')
                || (predicate && matches!(bytes[j], b'?' | b'!')))
        {
            j += 1;
        }
        j
    };
    while i < bytes.len() {
        let single = match bytes[i] {
            b'(' => Some(Tok::Open),
            b')' => Some(Tok::Close),
            b'[' => Some(Tok::OpenAlt),
            b']' => Some(Tok::CloseAlt),
            b'*' | b'?' => Some(Tok::Optional),
            b'+' | b'.' => Some(Tok::Other),
            _ => None,
        };
        if let Some(tok) = single {
            out.push(tok);
            i += 1;
            continue;
        }
        match bytes[i] {
            b';' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push(Tok::Other);
            }
            b'#' => {
                i = word_end(i + 1, true);
                out.push(Tok::Predicate);
            }
            b'@' | b'!' => {
                i = word_end(i + 1, false);
                out.push(Tok::Other);
            }
            b if b.is_ascii_alphanumeric() || b == b'_' => {
                let end = word_end(i, false);
                if bytes.get(end) == Some(&b':') {
                    out.push(Tok::Other);
                    i = end + 1;
                } else {
                    out.push(Tok::Word(&text[i..end]));
                    i = end;
                }
            }
            _ => i += 1,
        }
    }
    out
}

enum Expr {
    /// A pattern that can match, starting at a node of one of `roots`.
    Pattern { roots: Vec<String>, optional: bool },
    /// Something that matches no node by itself (a predicate, an anchor, a capture).
    Skip,
}

/// Parses one item at `pos`; `None` for a shape that no single node can start.
fn parse_expr(tokens: &[Tok<'_>], pos: &mut usize) -> Option<Expr> {
    let tok = tokens.get(*pos)?;
    *pos += 1;
    let roots = match tok {
        Tok::Open => match tokens.get(*pos)? {
            Tok::Predicate => {
                skip_to_close(tokens, pos)?;
                return Some(Expr::Skip);
            }
            Tok::Word(kind) if *kind != "_" => {
                *pos += 1;
                skip_to_close(tokens, pos)?;
                vec![kind.to_string()]
            }
            Tok::Open | Tok::OpenAlt => {
                // A group of siblings: it can start at its one required member.
                let mut required = Vec::new();
                while tokens.get(*pos)? != &Tok::Close {
                    if let Expr::Pattern { roots, optional } = parse_expr(tokens, pos)?
                        && !optional
                    {
                        required.push(roots);
                    }
                }
                *pos += 1;
                if required.len() != 1 {
                    return None;
                }
                required.pop()?
            }
            _ => return None,
        },
        Tok::OpenAlt => {
            let mut all = Vec::new();
            while tokens.get(*pos)? != &Tok::CloseAlt {
                if let Expr::Pattern { roots, .. } = parse_expr(tokens, pos)? {
                    all.extend(roots);
                }
            }
            *pos += 1;
            all
        }
        Tok::Word(_) => return None,
        Tok::Close | Tok::CloseAlt => return None,
        Tok::Other | Tok::Optional | Tok::Predicate => return Some(Expr::Skip),
    };
    let optional = tokens.get(*pos) == Some(&Tok::Optional);
    if optional {
        *pos += 1;
    }
    Some(Expr::Pattern { roots, optional })
}

/// Moves `pos` past the `)` that closes the node opened before it.
fn skip_to_close(tokens: &[Tok<'_>], pos: &mut usize) -> Option<()> {
    let mut depth = 1usize;
    while depth > 0 {
        match tokens.get(*pos)? {
            Tok::Open => depth += 1,
            Tok::Close => depth -= 1,
            _ => {}
        }
        *pos += 1;
    }
    Some(())
}

/// Every spec, for tests and for `codectx` to list supported languages.
pub fn all_specs() -> &'static [LanguageSpec] {
    SPECS
}
