//! The tree-sitter chunker: definitions from the language's queries, nested into a forest,
//! emitted whole when small, split at child boundaries when large, merged when tiny.

use super::spec::{self, CompiledSpec};
use super::text::windows;
use super::{Builder, Meta};
use crate::model::ChunkKind;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use streaming_iterator::StreamingIterator;
use tree_sitter::{Node, Parser, QueryCursor, QueryCursorOptions, Tree};

/// The deepest syntax-tree level at which a definition may start.
const MAX_DEFINITION_DEPTH: u32 = 8;

/// Longest signature kept, in bytes.
const MAX_SIGNATURE: usize = 240;

thread_local! {
    static PARSER: RefCell<Parser> = RefCell::new(Parser::new());
}

/// A definition found in the tree, normalised (lifted, unwrapped, with attached comments).
struct Def<'t> {
    /// The node whose text is the definition (wrappers included).
    node: Node<'t>,
    /// Start including attached doc comments and attributes.
    start: usize,
    end: usize,
    kind: ChunkKind,
    name: String,
    signature: String,
    doc: String,
    children: Vec<usize>,
}

impl Def<'_> {
    fn len(&self) -> usize {
        self.end - self.start
    }

    /// How this definition reads as the scope of its children.
    fn label(&self) -> String {
        if self.signature.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            self.signature.clone()
        }
    }
}

/// Chunks a code file; falls back to line windows when the grammar is missing, the parse
/// exceeds its work budget, or the parser gives up.
pub fn chunk(b: &mut Builder<'_>) {
    let budget = Budget::new(b.config.parse_work);
    chunk_within(b, &budget, &budget);
}

fn chunk_within(b: &mut Builder<'_>, parse_budget: &Budget, definitions_budget: &Budget) {
    let Some(spec) = spec::compiled(b.language) else {
        b.diagnose(
            format!("no grammar for {}; chunked by lines", b.language),
            true,
        );
        return windows(b, 0, b.text.len(), &Meta::lines());
    };
    let tree = match parse(&spec, b.text, parse_budget) {
        Ok(tree) => tree,
        Err(reason) => {
            b.diagnose(format!("{reason}; chunked by lines"), true);
            return windows(b, 0, b.text.len(), &Meta::lines());
        }
    };
    let root = tree.root_node();
    if root.has_error() {
        b.diagnose("syntax errors; chunks around them may be coarse", false);
    }
    let Some(mut defs) = collect_defs(&spec, b.text, root, definitions_budget) else {
        b.diagnose(
            format!(
                "definition query exceeded the parse budget of {} work units; chunked by lines",
                b.config.parse_work
            ),
            true,
        );
        return windows(b, 0, b.text.len(), &Meta::lines());
    };
    let roots = nest(&mut defs);
    let mut emitter = Emitter { b, defs: &defs };
    emitter.level(0, emitter.b.text.len(), &roots, "", None);
}

// The costs make one unit about one microsecond of one core of the development machine
// (measured on pandas' frame.py, Django's query.py and cc's lib.rs: 0.8-1.1 us per unit
// parsing, 0.5-1.4 us finding definitions), so `parse_work` reads roughly as microseconds.

/// Work units one parser progress callback costs (tree-sitter calls it every 100 parser
/// operations).
const PARSE_STEP_UNITS: u64 = 20;
/// Work units one query-cursor progress callback costs (every 1,000 query steps).
const QUERY_STEP_UNITS: u64 = 100;
/// Work units of 512 nodes walked looking for definitions.
const WALK_STEP_UNITS: u64 = 200;

/// The work one file may take, counted rather than timed: tree-sitter's progress callbacks
/// and the nodes the definition walk visits, each a fixed number of units. The same bytes
/// always cost the same, so a file gets the same chunks however loaded the machine is
/// (a wall-clock deadline made a busy indexer fall back to line windows where an idle one
/// did not). Remembers whether it ran out.
struct Budget {
    left: Cell<u64>,
    exceeded: Cell<bool>,
}

impl Budget {
    fn new(units: u64) -> Budget {
        Budget {
            left: Cell::new(units),
            exceeded: Cell::new(false),
        }
    }

    fn spend(&self, units: u64) -> ControlFlow<()> {
        match self.left.get().checked_sub(units) {
            Some(left) if !self.exceeded.get() => {
                self.left.set(left);
                ControlFlow::Continue(())
            }
            _ => {
                self.exceeded.set(true);
                ControlFlow::Break(())
            }
        }
    }

    fn exceeded(&self) -> bool {
        self.exceeded.get()
    }
}

fn parse(spec: &CompiledSpec, text: &str, budget: &Budget) -> Result<Tree, String> {
    PARSER.with(|cell| {
        let mut parser = cell.borrow_mut();
        parser
            .set_language(&spec.ts_language)
            .map_err(|e| format!("grammar version mismatch: {e}"))?;
        let bytes = text.as_bytes();
        let mut progress = |_: &tree_sitter::ParseState| budget.spend(PARSE_STEP_UNITS);
        let options = tree_sitter::ParseOptions::new().progress_callback(&mut progress);
        let tree = parser.parse_with_options(
            &mut |offset, _| bytes.get(offset..).unwrap_or_default(),
            None,
            Some(options),
        );
        parser.reset();
        match tree {
            Some(tree) => Ok(tree),
            None if budget.exceeded() => Err("parse exceeded its work budget".to_string()),
            None => Err("the parser gave up".to_string()),
        }
    })
}

/// How the definition query is run over a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryStrategy {
    /// Walk the tree and run the query only at nodes where a definition pattern can start
    /// (the fast path, used whenever the spec knows those kinds).
    StartNodes,
    /// One query cursor over the whole tree (the reference the fast path must agree with).
    WholeTree,
}

/// The definitions the chunker finds in `text`, as (start, end, kind, name), in document
/// order; `None` when the language has no grammar or the parse fails. For tests that hold
/// the two [`QueryStrategy`]s to the same answer.
pub fn definitions(
    language: crate::model::Language,
    text: &str,
    strategy: QueryStrategy,
) -> Option<Vec<(usize, usize, ChunkKind, String)>> {
    let spec = spec::compiled(language)?;
    let budget = Budget::new(u64::MAX);
    let tree = parse(&spec, text, &budget).ok()?;
    let mut defs = collect_defs_with(&spec, text, tree.root_node(), &budget, strategy)?;
    defs.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    Some(
        defs.into_iter()
            .map(|d| (d.start, d.end, d.kind, d.name))
            .collect(),
    )
}

/// Runs the definition query and normalises each captured definition; `None` when the
/// budget ran out.
fn collect_defs<'t>(
    spec: &CompiledSpec,
    text: &str,
    root: Node<'t>,
    budget: &Budget,
) -> Option<Vec<Def<'t>>> {
    collect_defs_with(spec, text, root, budget, QueryStrategy::StartNodes)
}

fn collect_defs_with<'t>(
    spec: &CompiledSpec,
    text: &str,
    root: Node<'t>,
    budget: &Budget,
    strategy: QueryStrategy,
) -> Option<Vec<Def<'t>>> {
    let mut collector = Collector {
        spec,
        text,
        defs: Vec::new(),
        seen: HashSet::new(),
        family: Family::new(strategy),
    };
    let mut cursor = QueryCursor::new();
    cursor.set_match_limit(4096);
    match (&spec.start_kinds, strategy) {
        (Some(start_kinds), QueryStrategy::StartNodes) => {
            // A query cursor pays for every node it visits (field and supertype bookkeeping);
            // a plain tree walk is several times cheaper, so the walk finds the few nodes a
            // definition can start at and the query runs at those alone.
            cursor.set_max_start_depth(Some(0));
            let mut walk = root.walk();
            collector.family.path.push(root);
            let mut visited = 0u32;
            'walk: loop {
                let node = walk.node();
                if let Some(top) = collector.family.path.last_mut() {
                    *top = node;
                }
                if start_kinds
                    .get(node.kind_id() as usize)
                    .copied()
                    .unwrap_or(false)
                {
                    // The query at one node (the root, for Python's module-level constants)
                    // may itself walk far: it answers to the same budget.
                    if !collector.query_at(&mut cursor, node, budget) {
                        return None;
                    }
                }
                visited += 1;
                if visited.is_multiple_of(512) && budget.spend(WALK_STEP_UNITS).is_break() {
                    return None;
                }
                // Below a node, descend only if the grammar lets a start kind occur there
                // within the depth limit (a subtree with errors may hold anything). The
                // path's length is the cursor's depth plus one (`TreeCursor::depth`
                // recounts it on every call).
                let depth = collector.family.path.len() - 1;
                let room = MAX_DEFINITION_DEPTH as usize - depth.min(MAX_DEFINITION_DEPTH as usize);
                let reachable = node.has_error()
                    || usize::from(
                        spec.start_below
                            .get(node.kind_id() as usize)
                            .copied()
                            .unwrap_or(1),
                    ) <= room;
                if room > 0 && reachable && walk.goto_first_child() {
                    collector.family.path.push(walk.node());
                    continue;
                }
                while !walk.goto_next_sibling() {
                    collector.family.path.pop();
                    if !walk.goto_parent() {
                        break 'walk;
                    }
                }
            }
        }
        _ => {
            // Definitions that matter for chunking sit near the top (namespaces, classes,
            // impls and their members); not descending into deep bodies keeps the query cheap.
            cursor.set_max_start_depth(Some(MAX_DEFINITION_DEPTH));
            if !collector.query_at(&mut cursor, root, budget) {
                return None;
            }
        }
    }
    Some(collector.defs)
}

/// Turns query matches into normalised definitions, each node once (the first match wins).
struct Collector<'s, 't> {
    spec: &'s CompiledSpec,
    text: &'s str,
    defs: Vec<Def<'t>>,
    seen: HashSet<(usize, usize)>,
    family: Family<'t>,
}

impl<'t> Collector<'_, 't> {
    /// Runs the definition query at `node` (as deep as `cursor` allows) and accepts every
    /// match; false when the budget ran out, leaving the definitions incomplete.
    fn query_at(&mut self, cursor: &mut QueryCursor, node: Node<'t>, budget: &Budget) -> bool {
        let mut progress = |_: &tree_sitter::QueryCursorState| budget.spend(QUERY_STEP_UNITS);
        let options = QueryCursorOptions::new().progress_callback(&mut progress);
        let mut matches =
            cursor.matches_with_options(&self.spec.query, node, self.text.as_bytes(), options);
        while let Some(m) = matches.next() {
            self.accept(m);
        }
        drop(matches);
        !budget.exceeded()
    }

    fn accept(&mut self, m: &tree_sitter::QueryMatch<'_, 't>) {
        let spec = self.spec;
        let text = self.text;
        let mut def_node = None;
        let mut name_node = None;
        for cap in m.captures() {
            if Some(cap.index) == spec.name_capture {
                name_node = Some(cap.node);
            } else if let Some(Some(kind)) = spec.definition_captures.get(cap.index as usize) {
                def_node = Some((cap.node, *kind));
            }
        }
        let (Some((captured, kind)), Some(name_node)) = (def_node, name_node) else {
            return;
        };
        let inner = lift(spec, captured, &mut self.family);
        let mut node = inner;
        while let Some(parent) = self
            .family
            .parent(node)
            .filter(|p| spec.spec.wrappers.contains(&p.kind()))
        {
            node = parent;
        }
        let key = (node.start_byte(), node.end_byte());
        if !self.seen.insert(key) {
            return;
        }
        let kind = spec::kind_of_node(inner.kind()).unwrap_or(kind);
        let name = text[name_node.byte_range()]
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let (start, doc) = attached(spec, text, node, inner, &mut self.family);
        self.defs.push(Def {
            node,
            start,
            end: node.end_byte(),
            kind,
            name,
            signature: signature(text, inner, captured),
            doc,
            children: Vec::new(),
        });
    }
}

/// Parent and previous-sibling lookups for the definitions of one tree.
///
/// tree-sitter keeps no parent or sibling links: `Node::parent` descends from the root and
/// `Node::prev_named_sibling` scans the parent's children, so a file of n top-level items
/// pays O(n^2) for them. The walk's path answers parents of the nodes on it, and each
/// parent's named children are listed once and searched by offset.
struct Family<'t> {
    /// The walk's path from the root to the node being matched (empty for
    /// [`QueryStrategy::WholeTree`], which asks tree-sitter directly).
    path: Vec<Node<'t>>,
    /// Parent id -> its named children in document order.
    children: HashMap<usize, Vec<Node<'t>>>,
    cached: bool,
}

impl<'t> Family<'t> {
    fn new(strategy: QueryStrategy) -> Self {
        Family {
            path: Vec::new(),
            children: HashMap::new(),
            cached: strategy == QueryStrategy::StartNodes,
        }
    }

    fn parent(&mut self, node: Node<'t>) -> Option<Node<'t>> {
        if !self.cached {
            return node.parent();
        }
        if let Some(i) = self.path.iter().rposition(|n| n.id() == node.id()) {
            return i.checked_sub(1).map(|i| self.path[i]);
        }
        // Below the path: most often a child of the node being matched (a method captured
        // by its `declaration_list`).
        if let Some(&top) = self.path.last()
            && self.index_in(top, node).is_some()
        {
            return Some(top);
        }
        node.parent()
    }

    fn prev_named_sibling(&mut self, node: Node<'t>) -> Option<Node<'t>> {
        if !self.cached {
            return node.prev_named_sibling();
        }
        let Some(parent) = self.parent(node) else {
            return node.prev_named_sibling();
        };
        match self.index_in(parent, node) {
            Some(0) => None,
            Some(i) => Some(self.children[&parent.id()][i - 1]),
            None => node.prev_named_sibling(),
        }
    }

    /// `node`'s position among `parent`'s named children, if it is one of them.
    fn index_in(&mut self, parent: Node<'t>, node: Node<'t>) -> Option<usize> {
        let kids = self.children.entry(parent.id()).or_insert_with(|| {
            let mut cursor = parent.walk();
            parent.named_children(&mut cursor).collect()
        });
        let first = kids.partition_point(|k| k.start_byte() < node.start_byte());
        kids[first..]
            .iter()
            .take_while(|k| k.start_byte() == node.start_byte())
            .position(|k| k.id() == node.id())
            .map(|i| first + i)
    }
}

/// Replaces a captured node by the ancestor that is the whole definition.
fn lift<'t>(spec: &CompiledSpec, node: Node<'t>, family: &mut Family<'t>) -> Node<'t> {
    let Some((_, targets)) = spec.spec.lift.iter().find(|(from, _)| *from == node.kind()) else {
        return node;
    };
    let mut cur = node;
    for _ in 0..6 {
        match family.parent(cur) {
            Some(parent) if targets.contains(&parent.kind()) => return parent,
            Some(parent) => cur = parent,
            None => break,
        }
    }
    node
}

fn is_comment(node: &Node<'_>) -> bool {
    node.kind().contains("comment")
}

/// Extends a definition back over the comments and attributes right above it (no blank line
/// between), and returns the new start and the doc comment text.
fn attached<'t>(
    spec: &CompiledSpec,
    text: &str,
    node: Node<'t>,
    inner: Node<'t>,
    family: &mut Family<'t>,
) -> (usize, String) {
    let mut start = node.start_byte();
    let mut row = node.start_position().row;
    let mut docs: Vec<&str> = Vec::new();
    let mut prev = family.prev_named_sibling(node);
    while let Some(sib) = prev {
        let attaches = is_comment(&sib) || sib.kind() == "attribute_item";
        if !attaches || sib.end_position().row + 1 < row {
            break;
        }
        // A Rust inner doc comment (`//!`, `/*!`) documents the enclosing module, never the
        // item below it.
        if spec.spec.language == crate::model::Language::Rust
            && is_comment(&sib)
            && matches!(
                text.get(sib.start_byte()..sib.start_byte() + 3),
                Some("//!" | "/*!")
            )
        {
            break;
        }
        if is_comment(&sib) {
            docs.push(&text[sib.byte_range()]);
        }
        start = sib.start_byte();
        row = sib.start_position().row;
        prev = family.prev_named_sibling(sib);
    }
    docs.reverse();
    let mut doc = docs.join("\n");
    if spec.spec.docstring_in_body && doc.is_empty() {
        let docstring = inner
            .child_by_field_name("body")
            .and_then(|body| body.named_child(0))
            .filter(|stmt| stmt.kind() == "expression_statement")
            .and_then(|stmt| stmt.named_child(0))
            .filter(|expr| expr.kind() == "string");
        if let Some(s) = docstring {
            doc = text[s.byte_range()].to_string();
        }
    }
    (start, doc)
}

/// The definition's header: its text up to the body, on one line.
fn signature(text: &str, inner: Node<'_>, captured: Node<'_>) -> String {
    let body = inner
        .child_by_field_name("body")
        .or_else(|| captured.child_by_field_name("body"))
        .or_else(|| {
            captured
                .child_by_field_name("value")
                .and_then(|v| v.child_by_field_name("body"))
        })
        .filter(|body| body.start_byte() > inner.start_byte());
    let head = match body {
        Some(body) => &text[inner.start_byte()..body.start_byte()],
        None => text[inner.byte_range()].lines().next().unwrap_or(""),
    };
    // Comment lines between the header and the body are not part of the signature; the
    // rest is joined on single spaces, built in one string.
    let mut sig = String::with_capacity(head.len().min(MAX_SIGNATURE * 2));
    for (i, line) in head.lines().enumerate() {
        let l = line.trim_start();
        if i > 0
            && ["#", "//", "/*", "*", "--"]
                .iter()
                .any(|c| l.starts_with(c))
        {
            continue;
        }
        for word in line.split_whitespace() {
            if !sig.is_empty() {
                sig.push(' ');
            }
            sig.push_str(word);
        }
    }
    let trimmed_len = sig.trim_end_matches(['{', ':', '=', ' ']).len();
    sig.truncate(trimmed_len);
    if sig.len() > MAX_SIGNATURE {
        let cut = crate::source::classify::floor_char_boundary(&sig, MAX_SIGNATURE);
        sig.truncate(cut);
    }
    sig
}

/// Orders definitions into a forest by containment; returns the roots. Definitions that
/// overlap without nesting are dropped (the first one wins).
fn nest(defs: &mut Vec<Def<'_>>) -> Vec<usize> {
    defs.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut roots = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut keep = vec![true; defs.len()];
    for i in 0..defs.len() {
        while let Some(&top) = stack.last() {
            if defs[i].start >= defs[top].end {
                stack.pop();
            } else {
                break;
            }
        }
        match stack.last().copied() {
            Some(top) if defs[i].end <= defs[top].end => {
                if defs[i].kind == ChunkKind::Function
                    && matches!(
                        defs[top].kind,
                        ChunkKind::Class
                            | ChunkKind::Struct
                            | ChunkKind::Impl
                            | ChunkKind::Trait
                            | ChunkKind::Interface
                    )
                {
                    defs[i].kind = ChunkKind::Method;
                }
                defs[top].children.push(i);
                stack.push(i);
            }
            Some(_) => keep[i] = false,
            None => {
                roots.push(i);
                stack.push(i);
            }
        }
    }
    for def in defs.iter_mut() {
        def.children.retain(|&c| keep[c]);
    }
    roots
}

enum Item {
    Def(usize),
    Gap(usize, usize),
}

struct Emitter<'a, 'b, 't> {
    b: &'a mut Builder<'b>,
    defs: &'a [Def<'t>],
}

impl Emitter<'_, '_, '_> {
    /// Emits the span `[start, end)` of one nesting level: its child definitions and the
    /// text between them. For a split parent, the text before the first child is the
    /// parent's header chunk.
    fn level(
        &mut self,
        start: usize,
        end: usize,
        children: &[usize],
        scope: &str,
        parent: Option<usize>,
    ) {
        let mut items = Vec::new();
        let mut cursor = start;
        for &c in children {
            let def = &self.defs[c];
            if def.start > cursor {
                items.push(Item::Gap(cursor, def.start));
            }
            items.push(Item::Def(c));
            cursor = cursor.max(def.end);
        }
        if cursor < end {
            items.push(Item::Gap(cursor, end));
        }
        let inner_scope = match parent {
            Some(p) => join_scope(scope, &self.defs[p].label()),
            None => scope.to_string(),
        };

        let mut group: Vec<&Item> = Vec::new();
        let mut group_bytes = 0;
        for (i, item) in items.iter().enumerate() {
            let (s, e) = self.item_span(item);
            if !self.meaningful(s, e) {
                continue;
            }
            if let (Some(p), 0, Item::Gap(..)) = (parent, i, item) {
                let meta = self.def_meta(p, scope, false);
                self.flush(&mut group, &mut group_bytes, &inner_scope);
                self.emit_sized(s, e, &meta);
                continue;
            }
            let size = e - s;
            if size < self.b.config.merge_below_bytes {
                if group_bytes + size > self.b.config.merge_max_bytes {
                    self.flush(&mut group, &mut group_bytes, &inner_scope);
                }
                group.push(item);
                group_bytes += size;
                continue;
            }
            self.flush(&mut group, &mut group_bytes, &inner_scope);
            self.single(item, &inner_scope);
        }
        self.flush(&mut group, &mut group_bytes, &inner_scope);
    }

    fn item_span(&self, item: &Item) -> (usize, usize) {
        match item {
            Item::Def(i) => (self.defs[*i].start, self.defs[*i].end),
            Item::Gap(s, e) => self.b.trim(*s, *e),
        }
    }

    /// Text worth a chunk: it has at least one letter or digit (not just `}` or `);`).
    fn meaningful(&self, s: usize, e: usize) -> bool {
        s < e && self.b.text[s..e].chars().any(char::is_alphanumeric)
    }

    fn single(&mut self, item: &Item, scope: &str) {
        match item {
            Item::Def(i) => self.def(*i, scope),
            Item::Gap(s, e) => {
                let meta = Meta {
                    kind: Some(ChunkKind::Block),
                    scope: scope.to_string(),
                    ..Meta::default()
                };
                self.emit_sized(*s, *e, &meta);
            }
        }
    }

    /// Emits a group of small adjacent items as one chunk.
    fn flush(&mut self, group: &mut Vec<&Item>, bytes: &mut usize, scope: &str) {
        *bytes = 0;
        match group.len() {
            0 => return,
            1 => {
                let item = group.pop().expect("one item");
                return self.single(item, scope);
            }
            _ => {}
        }
        let (start, _) = self.item_span(group[0]);
        let (_, end) = self.item_span(group[group.len() - 1]);
        let mut symbols = Vec::new();
        let mut kinds = Vec::new();
        for item in group.iter() {
            if let Item::Def(i) = item {
                self.collect_symbols(*i, &mut symbols);
                kinds.push(self.defs[*i].kind);
            }
        }
        let kind = if kinds.is_empty() {
            ChunkKind::Block
        } else {
            ChunkKind::Group
        };
        let first_def = group.iter().find_map(|item| match item {
            Item::Def(i) => Some(*i),
            Item::Gap(..) => None,
        });
        let meta = Meta {
            kind: Some(kind),
            symbol: symbols.first().cloned().unwrap_or_default(),
            symbols,
            scope: scope.to_string(),
            signature: first_def
                .map(|i| self.defs[i].signature.clone())
                .unwrap_or_default(),
            doc: first_def
                .map(|i| self.defs[i].doc.clone())
                .unwrap_or_default(),
        };
        group.clear();
        self.b.emit(start, end, &meta);
    }

    fn collect_symbols(&self, i: usize, out: &mut Vec<String>) {
        let def = &self.defs[i];
        if !def.name.is_empty() && !out.contains(&def.name) {
            out.push(def.name.clone());
        }
        for &c in &def.children {
            self.collect_symbols(c, out);
        }
    }

    fn def_meta(&self, i: usize, scope: &str, with_children: bool) -> Meta {
        let def = &self.defs[i];
        let mut symbols = Vec::new();
        if with_children {
            self.collect_symbols(i, &mut symbols);
        } else {
            symbols.push(def.name.clone());
        }
        Meta {
            kind: Some(def.kind),
            symbol: def.name.clone(),
            symbols,
            scope: scope.to_string(),
            signature: def.signature.clone(),
            doc: def.doc.clone(),
        }
    }

    /// One definition: whole if it fits, else split at its children or its statements.
    fn def(&mut self, i: usize, scope: &str) {
        let def = &self.defs[i];
        if def.len() <= self.b.config.max_chunk_bytes {
            let meta = self.def_meta(i, scope, true);
            return self.b.emit(def.start, def.end, &meta);
        }
        if !def.children.is_empty() {
            let children = def.children.clone();
            return self.level(def.start, def.end, &children, scope, Some(i));
        }
        let meta = self.def_meta(i, scope, false);
        let boundaries = statement_boundaries(def.node);
        self.split_at(def.start, def.end, &boundaries, &meta);
    }

    /// A chunk for `[s, e)`, cut into windows if it is over the maximum size.
    fn emit_sized(&mut self, s: usize, e: usize, meta: &Meta) {
        if e - s > self.b.config.max_chunk_bytes {
            windows(self.b, s, e, meta);
        } else {
            self.b.emit(s, e, meta);
        }
    }

    /// Cuts a large leaf definition at statement boundaries into pieces of about the target
    /// size; stretches with no usable boundary become line windows.
    fn split_at(&mut self, start: usize, end: usize, boundaries: &[usize], meta: &Meta) {
        let target = self.b.config.target_chunk_bytes;
        let mut meta = meta.clone();
        let mut cur = start;
        while end - cur > self.b.config.max_chunk_bytes {
            let next = boundaries
                .iter()
                .copied()
                .filter(|&b| b > cur && b - cur <= target)
                .max()
                .or_else(|| boundaries.iter().copied().find(|&b| b > cur));
            let cut = match next {
                Some(cut) if cut < end => cut,
                _ => end,
            };
            self.emit_sized(cur, cut, &meta);
            meta.doc.clear();
            cur = cut;
        }
        if cur < end {
            self.emit_sized(cur, end, &meta);
        }
    }
}

/// Byte offsets where the statements of a definition's body start.
fn statement_boundaries(node: Node<'_>) -> Vec<usize> {
    let body = node
        .child_by_field_name("body")
        .or_else(|| {
            let mut cursor = node.walk();
            node.named_children(&mut cursor)
                .filter_map(|c| c.child_by_field_name("body"))
                .next()
        })
        .unwrap_or(node);
    let mut cursor = body.walk();
    body.named_children(&mut cursor)
        .map(|c| c.start_byte())
        .collect()
}

fn join_scope(outer: &str, label: &str) -> String {
    if outer.is_empty() {
        label.to_string()
    } else {
        format!("{outer} > {label}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChunkConfig;
    use crate::model::Language;

    /// Enough definitions that the walk and the query both pass their periodic budget checks.
    fn many_functions(language: Language, n: usize) -> String {
        (0..n)
            .map(|i| match language {
                Language::Python => {
                    format!("LIMIT_{i} = {i}\n\ndef f{i}(x):\n    return x + {i}\n\n")
                }
                _ => format!("fn f{i}(x: u32) -> u32 {{\n    x + {i}\n}}\n\n"),
            })
            .collect()
    }

    fn chunk_with(
        language: Language,
        text: &str,
        definition_units: u64,
    ) -> super::super::ChunkOutput {
        let config = ChunkConfig::default();
        let mut b = Builder::new("gen.src", language, text, &config);
        chunk_within(
            &mut b,
            &Budget::new(u64::MAX),
            &Budget::new(definition_units),
        );
        b.finish()
    }

    #[test]
    fn a_definition_query_past_its_budget_falls_back_to_lines_and_says_so() {
        for language in [Language::Rust, Language::Python] {
            let text = many_functions(language, 2000);
            // The control: with time to spare the same text is chunked by its definitions.
            let out = chunk_with(language, &text, u64::MAX);
            assert!(
                out.diagnostics.is_empty(),
                "{language:?}: {:?}",
                out.diagnostics
            );
            // (Small functions merge into groups; none is a line window.)
            assert!(!out.chunks.is_empty(), "{language:?}");
            assert!(
                out.chunks.iter().all(|c| c.kind != ChunkKind::Lines),
                "{language:?}"
            );

            // Parsed in time, but the definitions are due the moment parsing ends.
            let out = chunk_with(language, &text, 0);
            assert_eq!(
                out.diagnostics.len(),
                1,
                "{language:?}: {:?}",
                out.diagnostics
            );
            let d = &out.diagnostics[0];
            assert!(d.fallback, "{language:?}");
            assert!(
                d.message
                    .starts_with("definition query exceeded the parse budget of "),
                "{language:?}: {}",
                d.message
            );
            assert!(
                !out.chunks.is_empty(),
                "{language:?}: the file still has chunks"
            );
            assert!(
                out.chunks.iter().all(|c| c.kind == ChunkKind::Lines),
                "{language:?}"
            );
        }
    }

    #[test]
    fn both_strategies_give_up_rather_than_return_half_the_definitions() {
        for language in [Language::Rust, Language::Python] {
            let text = many_functions(language, 2000);
            let spec = spec::compiled(language).unwrap();
            let tree = parse(&spec, &text, &Budget::new(u64::MAX)).unwrap();
            for strategy in [QueryStrategy::StartNodes, QueryStrategy::WholeTree] {
                let all = collect_defs_with(
                    &spec,
                    &text,
                    tree.root_node(),
                    &Budget::new(u64::MAX),
                    strategy,
                )
                .unwrap();
                assert!(
                    all.len() >= 2000,
                    "{language:?} {strategy:?}: {}",
                    all.len()
                );
                let late =
                    collect_defs_with(&spec, &text, tree.root_node(), &Budget::new(0), strategy);
                assert!(late.is_none(), "{language:?} {strategy:?}");
            }
        }
    }
}
