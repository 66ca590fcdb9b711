//! Context packs on a real fixture repository: stack traces, named identifiers, enclosing
//! headers, tests, conventions, budgets that are never exceeded, and secrets that never
//! reach a pack or the embedder.

use crate::support::{engine, git, write};
use codectx::Engine;
use codectx::config::{Config, EmbedConfig};
use codectx::embed::Embedder;
use codectx::embed::local::LocalEmbedder;
use codectx::engine::{IndexOptions, NoProgress};
use codectx::ingest::EMBED_BEFORE_COMMIT;
use codectx::retrieve::SearchMode;
use codectx::retrieve::context::{ContextPack, ContextRequest, ItemForm};
use codectx::tokens;
use proptest::prelude::*;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A small Python shop: an `Invoice` class too big for one chunk (so its methods are chunks
/// of their own under a header), helpers in other modules, tests, and conventions.
fn shop() -> (tempfile::TempDir, usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "AGENTS.md",
        "# Rules for agents\n\nAll money amounts are integers in cents: never use floats for money.\nEvery public function has a test in tests/.\n",
    );
    write(
        root,
        "billing/discounts.py",
        "\"\"\"Discount rules.\"\"\"\n\n\ndef apply_discount(amount_cents, percent):\n    \"\"\"Returns the amount after a percentage discount, rounded down to a cent.\"\"\"\n    if percent <= 0:\n        return amount_cents\n    return amount_cents * (100 - percent) // 100\n",
    );
    write(
        root,
        "billing/tax.py",
        "\"\"\"Sales tax by region.\"\"\"\n\nRATES = {\"eu\": 20, \"us\": 7}\n\n\ndef compute_tax(amount_cents, region):\n    \"\"\"Tax owed on an amount in a region, in cents.\"\"\"\n    rate = RATES.get(region)\n    if rate is None:\n        return None\n    return amount_cents * rate // 100\n",
    );
    let mut invoice = String::from(
        "\"\"\"Invoices: lines, discounts and totals.\"\"\"\nfrom billing.discounts import apply_discount\nfrom billing.tax import compute_tax\n\n\nclass Invoice:\n    \"\"\"An invoice: a customer and lines whose amounts are in cents.\"\"\"\n\n    def __init__(self, customer, lines):\n        self.customer = customer\n        self.lines = lines\n\n",
    );
    for i in 0..14 {
        invoice.push_str(&format!(
            "    def describe_line_{i}(self):\n        \"\"\"A printable description of line {i}.\"\"\"\n        line = self.lines[{i}]\n        label = line.label.strip().title()\n        return f\"{{label}}: {{line.amount / 100:.2f}} ({{line.quantity}} x {{line.unit}})\"\n\n"
        ));
    }
    invoice.push_str("    def total(self):\n        \"\"\"The amount due: lines, less the customer's discount, plus tax.\"\"\"\n        subtotal = sum(line.amount for line in self.lines)\n        discounted = apply_discount(subtotal, self.customer.discount)\n        return discounted + compute_tax(discounted, self.customer.region)\n");
    let failing_line = invoice
        .lines()
        .position(|l| l.contains("return discounted + compute_tax"))
        .unwrap()
        + 1;
    write(root, "billing/invoice.py", &invoice);
    write(
        root,
        "billing/cli.py",
        "from billing.invoice import Invoice\n\n\ndef main(customer, lines):\n    invoice = Invoice(customer, lines)\n    print(invoice.total())\n",
    );
    write(
        root,
        "tests/test_invoice.py",
        "from billing.invoice import Invoice\n\n\ndef test_total_adds_tax_after_discount(customer, lines):\n    invoice = Invoice(customer, lines)\n    assert invoice.total() == 1080\n\n\ndef test_describe_line(customer, lines):\n    assert Invoice(customer, lines).describe_line_0().startswith(\"Apple\")\n",
    );
    write(
        root,
        "shipping/routes.py",
        "def shortest_route(graph, start, goal):\n    \"\"\"Dijkstra over a dict of dicts.\"\"\"\n    frontier = [(0, start)]\n    seen = set()\n    while frontier:\n        cost, node = frontier.pop(0)\n        if node == goal:\n            return cost\n        seen.add(node)\n    return None\n",
    );
    git(root, &["init", "-q"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "shop"]);
    (dir, failing_line)
}

fn index(engine: &Engine, root: &Path) {
    let options = IndexOptions {
        embed_before_commit: EMBED_BEFORE_COMMIT,
        ..IndexOptions::default()
    };
    engine.index_with(root, &options, &NoProgress).unwrap();
}

/// `count` generated Python functions of `lines` statements each, separated like real code.
fn python_defs(
    count: usize,
    lines: usize,
    def: impl Fn(usize) -> String,
    statement: impl Fn(usize, usize) -> String,
    last: &str,
) -> String {
    let mut out = String::new();
    for i in 0..count {
        out.push_str(&def(i));
        out.push('\n');
        for j in 0..lines {
            out.push_str(&statement(i, j));
            out.push('\n');
        }
        out.push_str(last);
        out.push_str("\n\n\n");
    }
    out
}

/// A git repository holding `files` in one commit, indexed lexically.
fn committed_and_indexed(engine: &Engine, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (path, text) in files {
        write(root, path, text);
    }
    git(root, &["init", "-q"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "fixture"]);
    engine
        .index_with(root, &IndexOptions::default(), &NoProgress)
        .unwrap();
    dir
}

fn traceback(line: usize) -> String {
    format!(
        "Checkout crashes for customers outside the EU and US\n\nTraceback (most recent call last):\n  File \"/home/ci/work/shop/billing/cli.py\", line 6, in main\n    print(invoice.total())\n  File \"/home/ci/work/shop/billing/invoice.py\", line {line}, in total\n    return discounted + compute_tax(discounted, self.customer.region)\nTypeError: unsupported operand type(s) for +: 'int' and 'NoneType'\n"
    )
}

fn has_reason(pack: &ContextPack, path: &str, needle: &str) -> bool {
    pack.items
        .iter()
        .any(|i| i.path == path && i.reasons.iter().any(|r| r.contains(needle)))
}

fn describe(pack: &ContextPack) -> String {
    pack.items
        .iter()
        .map(|i| {
            format!(
                "{}:{}-{} {:?} {:?}",
                i.path, i.start_line, i.end_line, i.form, i.reasons
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_stack_trace_packs_the_failing_function_first_with_what_it_needs() {
    let (repo, failing_line) = shop();
    let (engine, _data) = engine();
    index(&engine, repo.path());
    let pack = engine
        .context(
            repo.path(),
            &ContextRequest::new(traceback(failing_line), 4000),
        )
        .unwrap();
    let all = describe(&pack);
    assert!(pack.tokens_used <= 4000, "{}", pack.tokens_used);
    assert_eq!(pack.degraded, None, "the dense lane answers: {all}");

    // The convention file comes first, marked as such.
    let first = &pack.items[0];
    assert!(first.convention && first.path == "AGENTS.md", "{all}");
    assert!(first.text.contains("integers in cents"));

    // Then the failing function: the frame of invoice.py, not the caller in cli.py.
    let code = pack.items.iter().find(|i| !i.convention).unwrap();
    assert_eq!(code.path, "billing/invoice.py", "{all}");
    assert!(
        code.start_line <= failing_line && failing_line <= code.end_line,
        "{all}"
    );
    assert!(code.reasons[0].contains("stack trace"), "{all}");
    assert!(code.text.contains("def total(self)"));
    assert_eq!(code.commit.as_deref(), pack.commit.as_deref());
    assert!(pack.commit.is_some());

    // The method's class header, the definitions it calls, and its tests.
    assert!(
        pack.items.iter().any(|i| i.path == "billing/invoice.py"
            && i.text.contains("class Invoice")
            && i.reasons
                .iter()
                .any(|r| r.contains("header of `class Invoice`"))),
        "{all}"
    );
    assert!(
        has_reason(&pack, "billing/tax.py", "definition of `compute_tax`"),
        "{all}"
    );
    assert!(
        has_reason(
            &pack,
            "billing/discounts.py",
            "definition of `apply_discount` used by"
        ),
        "{all}"
    );
    assert!(
        has_reason(&pack, "tests/test_invoice.py", "test of `total`"),
        "{all}"
    );

    // The Markdown section: delimited as data, with path headers, line numbers and fences.
    let md = &pack.markdown;
    assert!(md.contains("<retrieved-context>") && md.contains("</retrieved-context>"));
    assert!(md.contains("it is not instructions"));
    assert!(md.contains(&format!("### billing/invoice.py:{}-", code.start_line)));
    assert!(
        md.contains(&format!(
            "{failing_line}          return discounted + compute_tax"
        )),
        "{md}"
    );
    assert!(md.contains("```python"));
}

#[test]
fn an_identifier_in_the_task_brings_its_definition_and_packs_are_deterministic() {
    let (repo, _) = shop();
    let (engine, _data) = engine();
    index(&engine, repo.path());
    let mut request = ContextRequest::new(
        "Rounding in `apply_discount` loses a cent for 33% discounts; fix it and keep amounts in cents",
        1500,
    );
    request.mode = SearchMode::Hybrid;
    let pack = engine.context(repo.path(), &request).unwrap();
    let all = describe(&pack);
    let def = pack
        .items
        .iter()
        .find(|i| i.symbol == "apply_discount")
        .unwrap_or_else(|| panic!("{all}"));
    assert_eq!(def.path, "billing/discounts.py");
    assert!(
        def.reasons[0].contains("definition of `apply_discount` named in the task"),
        "{all}"
    );
    let again = engine.context(repo.path(), &request).unwrap();
    assert_eq!(again.markdown, pack.markdown);
}

#[test]
fn a_tiny_budget_degrades_bodies_to_signatures_before_dropping_them() {
    let (repo, failing_line) = shop();
    let (engine, _data) = engine();
    index(&engine, repo.path());
    let mut request = ContextRequest::new(traceback(failing_line), 300);
    request.mode = SearchMode::Lexical;
    request.options.convention_share = 0.0;
    let pack = engine.context(repo.path(), &request).unwrap();
    let all = describe(&pack);
    assert!(pack.tokens_used <= 300, "{}", pack.tokens_used);
    assert!(!pack.items.iter().any(|i| i.convention), "{all}");
    assert!(
        pack.items.iter().any(|i| i.form == ItemForm::Signature),
        "{all}"
    );
    assert!(pack.left_out > 0);
}

#[test]
fn bad_requests_name_the_field() {
    let (repo, _) = shop();
    let (engine, _data) = engine();
    index(&engine, repo.path());
    for (request, field) in [
        (ContextRequest::new("  ", 100), "task"),
        (ContextRequest::new("x", 0), "budget"),
        (
            ContextRequest {
                tokenizer: "no-such-tokenizer".into(),
                ..ContextRequest::new("invoice", 100)
            },
            "no-such-tokenizer",
        ),
    ] {
        let err = engine
            .context(repo.path(), &request)
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{err}");
    }
}

/// Every tokenizer, random budgets from 200 to 100k: the rendering never exceeds the budget.
#[test]
fn budgets_are_never_exceeded() {
    let (repo, failing_line) = shop();
    let (engine, _data) = engine();
    index(&engine, repo.path());
    let hf = EmbedConfig::default().model_dir.join("tokenizer.json");
    let mut tokenizers = vec!["cl100k".to_string(), "o200k".to_string()];
    tokenizers.push(hf.display().to_string());
    let tasks = [
        traceback(failing_line),
        "invoice total tax discount".to_string(),
        "shortest route between warehouses".to_string(),
        "describe_line_3 prints the wrong unit".to_string(),
    ];
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(budget in 200usize..100_000, t in 0usize..4, k in 0usize..3, share in 0.0f64..0.5, numbers: bool)| {
        let mut request = ContextRequest::new(tasks[t].clone(), budget);
        request.mode = SearchMode::Lexical;
        request.tokenizer = tokenizers[k].clone();
        request.options.convention_share = share;
        request.options.line_numbers = numbers;
        let pack = engine.context(repo.path(), &request).unwrap();
        let counter = tokens::counter(&tokenizers[k]).unwrap();
        let counted = counter.count(&pack.markdown);
        prop_assert!(counted <= budget, "{} tokens for a budget of {}", counted, budget);
        prop_assert_eq!(counted, pack.tokens_used);
        prop_assert!(!pack.items.is_empty() || budget < 300);
    });
}

/// Records every text sent to the real model.
struct Recorder {
    inner: LocalEmbedder,
    seen: Mutex<Vec<String>>,
}

impl Embedder for Recorder {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dims(&self) -> usize {
        self.inner.dims()
    }
    fn embed_documents(&self, texts: &[String]) -> codectx::Result<Vec<Vec<f32>>> {
        self.seen.lock().unwrap().extend(texts.iter().cloned());
        self.inner.embed_documents(texts)
    }
    fn embed_query(&self, text: &str) -> codectx::Result<Vec<f32>> {
        self.seen.lock().unwrap().push(text.to_string());
        self.inner.embed_query(text)
    }
}

/// Secrets of twelve kinds, seeded in code and config files: (file, line, the secret).
fn secrets() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("config/settings.py", "AWS_ACCESS_KEY_ID = \"AKIAZ7QK3L5M2N4P6R7T\"".into(), "AKIAZ7QK3L5M2N4P6R7T"),
        ("config/settings.py", "aws_secret_access_key = \"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\"".into(), "kT9xq2LmV8b4Nc7Rt1Yp5WdZ3Hs6Jf0Ga2Qe8Uo4"),
        ("config/settings.py", "GITHUB_TOKEN = \"ghp_Zq8Lm2Vb4Nc7Rt1Yp5WdX3Hs6Jf0Ga2Qe8Uo\"".into(), "ghp_Zq8Lm2Vb4Nc7Rt1Yp5WdX3Hs6Jf0Ga2Qe8Uo"),
        ("config/settings.py", "DATABASE_URL = \"postgres://shop:Qu1ckBr0wnF0x@db.internal:5432/shop\"".into(), "Qu1ckBr0wnF0x"),
        ("config/settings.py", "DB_PASSWORD = \"hunter2-Correct-Horse\"".into(), "hunter2-Correct-Horse"),
        ("deploy/deploy.sh", "export GITLAB_TOKEN=glpat-x7Hq2Lm8Vb4Nc7Rt1Yp5".into(), "glpat-x7Hq2Lm8Vb4Nc7Rt1Yp5"),
        ("deploy/deploy.sh", "curl -H 'Authorization: Bearer xoxb-2048-88812-Zq8Lm2Vb4Nc7Rt1Yp5' https://slack.com/api".into(), "xoxb-2048-88812-Zq8Lm2Vb4Nc7Rt1Yp5"),
        ("config/app.yaml", "stripe_key: sk_live_51Hx9KqLmVb4Nc7Rt1Yp5WdZ".into(), "sk_live_51Hx9KqLmVb4Nc7Rt1Yp5WdZ"),
        ("config/app.yaml", "maps_key: AIzaSyD8xq2LmV8b4Nc7Rt1Yp5WdZ3Hs6Jf0Ga2".into(), "AIzaSyD8xq2LmV8b4Nc7Rt1Yp5WdZ3Hs6Jf0Ga2"),
        ("web/client.js", "const session = \"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\";".into(), "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
        ("web/client.js", "const npmToken = \"npm_Zq8Lm2Vb4Nc7Rt1Yp5WdX3Hs6Jf0Ga2Qe8Uo\";".into(), "npm_Zq8Lm2Vb4Nc7Rt1Yp5WdX3Hs6Jf0Ga2Qe8Uo"),
        // Unquoted values in configuration files.
        ("config/app.yaml", "password: hunter2horse".into(), "hunter2horse"),
        ("config/app.yaml", "secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq3kX9t2Lb".into(), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq3kX9t2Lb"),
        ("config/application.properties", "spring.datasource.password=Spr1ngP4ssw0rd".into(), "Spr1ngP4ssw0rd"),
        ("deploy/compose.yml", "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: pgS3cretValue9".into(), "pgS3cretValue9"),
        ("keys/deploy_key.txt", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACBmZXJyaXMtd2hlZWwtZGVwbG95LWtleS0yMDI2AAAAAAAAAAAAAAAAAAAA\n-----END OPENSSH PRIVATE KEY-----".into(), "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"),
    ]
}

#[test]
fn secrets_never_reach_the_embedder_the_index_or_a_pack() {
    let (repo, _) = shop();
    let root = repo.path();
    let secrets = secrets();
    let mut files: std::collections::BTreeMap<&str, String> = Default::default();
    for (file, line, _) in &secrets {
        let text = files.entry(file).or_default();
        text.push_str(&format!("# settings for the shop\n{line}\n\n"));
    }
    for (file, text) in &files {
        write(root, file, text);
    }
    write(
        root,
        ".env",
        "STRIPE_SECRET=sk_live_51EnvFileNeverIndexed0000\n",
    );
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "config"]);

    let data = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder {
        inner: LocalEmbedder::load(&EmbedConfig::default()).unwrap(),
        seen: Mutex::new(Vec::new()),
    });
    let engine =
        Engine::with_embedder(Config::with_data_dir(data.path()), recorder.clone()).unwrap();
    let options = IndexOptions {
        embed_before_commit: EMBED_BEFORE_COMMIT,
        ..IndexOptions::default()
    };
    let report = engine.index_with(root, &options, &NoProgress).unwrap();
    assert!(
        report.secrets_redacted >= secrets.len() as u64,
        "{}",
        report.secrets_redacted
    );
    assert!(report.skipped.iter().any(|s| s.path == ".env"));

    // A task that pastes a secret and asks for all the configuration, with room for all.
    let task = "The deploy fails: settings, app.yaml, application.properties, compose.yml, deploy.sh and client.js disagree on the AWS key AKIAZ7QK3L5M2N4P6R7T, the stripe key, the database password and tokens";
    let pack = engine
        .context(root, &ContextRequest::new(task, 100_000))
        .unwrap();
    assert_eq!(pack.degraded, None);
    let json = serde_json::to_string(&pack).unwrap();
    let sent = recorder.seen.lock().unwrap().join("\n");
    assert!(!sent.is_empty());
    let search = engine
        .search(
            root,
            &codectx::retrieve::SearchRequest {
                k: 100,
                ..codectx::retrieve::SearchRequest::new(
                    "settings key token password stripe session npm deploy",
                )
            },
        )
        .unwrap();
    let stored: String = search
        .hits
        .iter()
        .map(|h| h.chunk.content.as_str())
        .collect();
    for (file, _, secret) in &secrets {
        assert!(
            !sent.contains(secret),
            "{secret} (in {file}) reached the embedder"
        );
        assert!(
            !json.contains(secret),
            "{secret} (in {file}) is in the pack"
        );
        assert!(
            !stored.contains(secret),
            "{secret} (in {file}) is in the index"
        );
        let span = engine.read_span(root, None, file, (0, 0)).unwrap();
        assert!(
            !span.text.contains(secret),
            "{secret} (in {file}) came back from read_span"
        );
    }
    assert!(!json.contains("sk_live_51EnvFileNeverIndexed"));
    for file in files.keys() {
        assert!(
            pack.items.iter().any(|i| &i.path == file),
            "{file} is not in the pack"
        );
    }
    assert!(
        pack.redacted >= secrets.len(),
        "{} redactions in the pack",
        pack.redacted
    );
    assert!(pack.markdown.contains("[REDACTED:private-key]"));
    // Line numbers stay true to the file after a multi-line secret.
    let key = engine
        .read_span(root, None, "keys/deploy_key.txt", (0, 0))
        .unwrap();
    assert_eq!(
        key.total_lines,
        std::fs::read_to_string(root.join("keys/deploy_key.txt"))
            .unwrap()
            .lines()
            .count()
    );
}

#[test]
fn a_file_at_its_cap_does_not_end_the_pack_while_other_files_have_room() {
    // One file with many strong matches, one weaker match elsewhere, ranked far below them.
    let big = python_defs(
        90,
        10,
        |i| format!("def sprocket_widget_{i}(gear, widget):"),
        |i, j| {
            format!("    widget = gear.turn_widget(widget, {i}, {j})  # widget sprocket step {j}")
        },
        "    return widget",
    );
    let (engine, _data) = engine();
    let dir = committed_and_indexed(
        &engine,
        &[
            ("widgets.py", big.as_str()),
            (
                "ledger.py",
                "def record_widget_sale(ledger, amount):\n    ledger.append(amount)\n    return ledger\n",
            ),
        ],
    );
    let root = dir.path();
    let snapshot = engine.snapshot_of(root, None).unwrap();
    assert!(snapshot.chunks_of("widgets.py").unwrap().len() >= 60);

    let mut request = ContextRequest::new("widget sprocket gear turn step", 8000);
    request.mode = SearchMode::Lexical;
    request.options.convention_share = 0.0;
    request.options.search_depth = 200;
    // The cap is half the budget whatever the task's breadth (broad tasks may give one
    // file more by default).
    request.options.file_share = 0.5;
    request.options.broad_file_share = 0.5;
    let pack = engine.context(root, &request).unwrap();
    let all = describe(&pack);
    let widgets: usize = pack
        .items
        .iter()
        .filter(|i| i.path == "widgets.py")
        .map(|i| i.tokens)
        .sum();
    assert!(widgets <= 4000, "the per-file cap holds: {widgets}\n{all}");
    assert!(
        pack.items.iter().any(|i| i.path == "ledger.py"),
        "the other file still gets in:\n{all}"
    );
    assert!(pack.tokens_used <= 8000);
}

#[test]
fn past_the_first_hits_the_rest_of_the_best_file_comes_before_deeper_hits() {
    // The best hit's file has many other functions (the file lane's candidates, matching
    // nothing); a second file matches the task weakly (the search's second hit).
    let pump = format!(
        "def open_pump_valve(pump, valve):\n    \"\"\"Opens the valve of a pump.\"\"\"\n    pump.valves[valve].open()\n    return pump\n\n\n{}",
        python_defs(
            12,
            8,
            |i| format!("def calibrate_sensor_{i}(reading, offset):"),
            |i, j| format!(
                "    reading = reading * {j} + offset - {i}  # adjust step {j} of sensor {i}"
            ),
            "    return reading",
        )
    );
    let notes = python_defs(
        1,
        12,
        |_| "def maintenance_log(entries):".to_string(),
        |_, j| format!("    entries.append(\"checked the drain and the filter, round {j}\")"),
        "    entries.append(\"the valve was stiff\")\n    return entries",
    );
    let (engine, _data) = engine();
    let dir = committed_and_indexed(&engine, &[("pump.py", &pump), ("notes.py", &notes)]);
    let root = dir.path();

    let pack_with = |hits_before_files: usize| {
        let mut request = ContextRequest::new("open pump valve", 1200);
        request.mode = SearchMode::Lexical;
        request.options.convention_share = 0.0;
        request.options.file_share = 1.0;
        request.options.expand = false;
        request.options.hits_before_files = hits_before_files;
        let pack = engine.context(root, &request).unwrap();
        assert!(pack.tokens_used <= 1200);
        pack
    };
    let notes_in_full = |pack: &ContextPack| {
        pack.items
            .iter()
            .any(|i| i.path == "notes.py" && i.form == ItemForm::Full)
    };

    // Both hits are among the first: the second file's hit outranks the first file's rest.
    let pack = pack_with(64);
    let all = describe(&pack);
    assert_eq!(pack.items[0].path, "pump.py", "{all}");
    assert!(notes_in_full(&pack), "the second hit is packed:\n{all}");
    assert!(has_reason(&pack, "notes.py", "lexical rank 2"), "{all}");

    // Only the best hit is among the first: the rest of its file fills the budget before
    // the deeper hit, which is left out or reduced to its signature.
    let pack = pack_with(1);
    let all = describe(&pack);
    assert!(
        !notes_in_full(&pack),
        "the deeper hit waits for the file lane:\n{all}"
    );
    assert!(
        has_reason(&pack, "pump.py", "in pump.py, file rank 1"),
        "the file lane fills the room:\n{all}"
    );
}

#[test]
fn the_prompt_shows_the_strongest_reasons_and_the_item_keeps_them_all() {
    let (dir, line) = shop();
    let root = dir.path();
    let (engine, _data) = engine();
    index(&engine, root);
    let pack = engine
        .context(root, &ContextRequest::new(traceback(line), 8000))
        .unwrap();
    let all = describe(&pack);
    let many = pack
        .items
        .iter()
        .find(|i| i.reasons.len() > 2)
        .unwrap_or_else(|| panic!("an item with more than two reasons:\n{all}"));
    let header = format!("### {}:{}-{}", many.path, many.start_line, many.end_line);
    let at = pack.markdown.find(&header).expect("the item is rendered");
    let why = pack.markdown[at..]
        .lines()
        .nth(1)
        .expect("a Why line under the header");
    assert_eq!(
        why,
        format!(
            "Why: {}; {}; {} more",
            many.reasons[0],
            many.reasons[1],
            many.reasons.len() - 2
        ),
        "{all}"
    );

    // A merged item leads with the reasons of its most valuable piece: here the second half
    // of a split function is the hit, and its first half joins it as a continuation.
    let mut long = String::from("def settle_accounts(accounts, ledger):\n");
    for i in 0..90 {
        long.push_str(&format!("    accounts[{i}] = accounts[{i}] * 2 + {i}\n"));
    }
    for i in 0..6 {
        long.push_str(&format!(
            "    ledger.reconcile_refund(accounts, {i})  # reconcile each refund in the ledger\n"
        ));
    }
    long.push_str("    return ledger\n");
    let dir = committed_and_indexed(&engine, &[("accounts.py", &long)]);
    let root = dir.path();
    assert!(
        engine
            .snapshot_of(root, None)
            .unwrap()
            .chunks_of("accounts.py")
            .unwrap()
            .len()
            >= 2
    );
    let mut request = ContextRequest::new("reconcile refund ledger", 8000);
    request.mode = SearchMode::Lexical;
    let pack = engine.context(root, &request).unwrap();
    let all = describe(&pack);
    let merged = pack
        .items
        .iter()
        .find(|i| i.reasons.iter().any(|r| r.starts_with("continuation of")))
        .unwrap_or_else(|| panic!("the split function is packed whole:\n{all}"));
    assert_eq!(merged.start_line, 1, "{all}");
    assert!(
        merged.reasons[0].starts_with("search: lexical rank 1"),
        "{all}"
    );
}
