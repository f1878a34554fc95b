//! The fast YAML path against serde-saphyr: whenever the fast path takes a
//! text, its tree (values and positions) must equal serde-saphyr's.

use super::fast as fast_yaml;
use super::{Kind, Value, allowance, parse, parse_with_serde_saphyr};
use std::path::Path;

/// Compares both readers on `text`; true when the fast path took it.
fn agrees(text: &str) -> bool {
    let Some(fast) = fast_yaml::parse(text, allowance(text)) else {
        return false;
    };
    let slow = parse_with_serde_saphyr(text);
    assert_eq!(
        Ok(fast),
        slow,
        "fast and serde-saphyr paths differ on:\n{text}"
    );
    true
}

fn yaml_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn project_files() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    for dir in ["tests", "topologies"] {
        yaml_files(&root.join(dir), &mut paths);
    }
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

#[test]
fn project_files_read_the_same() {
    let files = project_files();
    assert!(files.len() > 50, "only {} YAML files found", files.len());
    let taken = files.iter().filter(|text| agrees(text)).count();
    // Most project files are plain topologies: the fast path must take them.
    assert!(taken * 4 > files.len() * 3, "{taken} of {}", files.len());
}

// The shapes of bench/gen_topology.py, in Rust so the test needs no Python.
fn mesh(n: usize) -> String {
    let mut out = String::from("name: mesh\nnodes:\n");
    for i in 0..n {
        let subs: Vec<String> = (0..n)
            .filter(|&m| m != i)
            .map(|m| format!("n{m}"))
            .collect();
        out.push_str(&format!(
            "  n{i}:\n    http: {}\n    zmq: {{ pub: {}, sub: [{}] }}\n",
            10000 + i,
            20000 + i,
            subs.join(", ")
        ));
    }
    out
}

fn mixed(n: usize) -> String {
    let mut out = String::from(
        "name: mixed\nbrokers:\n  main: { url: \"redis://127.0.0.1:6379\" }\nnodes:\n",
    );
    let chain = 5;
    for i in (0..n).step_by(chain) {
        let room = (i / chain) % 10;
        out.push_str(&format!(
            "  p{i}:\n    http: {}\n    redis: {{ broker: main, publish: room.{room}.{i}, \
             subscribe: [room.{room}.{i}], patterns: [\"room.{room}.*\"] }}\n",
            10000 + i
        ));
        out.push_str(&format!(
            "  in{i}:\n    relay: true\n    redis: {{ broker: main, publish: sink.{i}, \
             subscribe: [room.{room}.{i}] }}\n    zmq: {{ pub: {} }}\n",
            20000 + i
        ));
        let mut prev = format!("in{i}");
        for k in 1..chain - 2 {
            out.push_str(&format!(
                "  r{i}_{k}:\n    http: {}\n    relay: true\n    zmq: {{ pub: {}, sub: [{prev}] }}\n",
                30000 + i * chain + k,
                20000 + i * chain + k
            ));
            prev = format!("r{i}_{k}");
        }
        out.push_str(&format!(
            "  t{i}:\n    http: {}\n    zmq: {{ sub: [{prev}] }}\n",
            50000 + i
        ));
    }
    out
}

fn rooms(n: usize) -> String {
    let mut out = String::from(
        "name: rooms\nbrokers:\n  main: { url: \"redis://127.0.0.1:6379\" }\nnodes:\n",
    );
    let rooms = (n / 100).max(1);
    for i in 0..n {
        let room = i % rooms;
        if i < 2 * rooms {
            out.push_str(&format!(
                "  n{i}: {{ http: {}, redis: {{ broker: main, publish: room.{room}, \
                 subscribe: [room.{room}] }} }}\n",
                10000 + i
            ));
        } else {
            out.push_str(&format!(
                "  n{i}: {{ redis: {{ broker: main, subscribe: [room.{room}] }} }}\n"
            ));
        }
    }
    out
}

#[test]
fn generated_topologies_read_the_same() {
    for n in [1, 2, 7, 40] {
        assert!(agrees(&mesh(n)), "mesh {n}");
    }
    for n in [5, 60, 300] {
        assert!(agrees(&mixed(n)), "mixed {n}");
    }
    for n in [1, 150, 2_000] {
        assert!(agrees(&rooms(n)), "rooms {n}");
    }
}

/// Spellings whose typing could differ between two readers.
const SPELLINGS: &[&str] = &[
    "",
    "~",
    "null",
    "Null",
    "NULL",
    "nULL",
    "nul",
    "none",
    "None",
    "true",
    "True",
    "TRUE",
    "tRUE",
    "false",
    "False",
    "FALSE",
    "yes",
    "Yes",
    "YES",
    "no",
    "No",
    "NO",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "y",
    "Y",
    "n",
    "N",
    "0",
    "1",
    "-1",
    "+1",
    "-0",
    "+0",
    "00",
    "007",
    "-007",
    "010",
    "0x1F",
    "0X1F",
    "0x",
    "0xg",
    "-0x1F",
    "0o17",
    "0O17",
    "0o8",
    "0b101",
    "0B101",
    "1_000",
    "1__0",
    "_1",
    "1_",
    "12345678901234567",
    "123456789012345678",
    "1234567890123456789",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "1.5",
    "-1.5",
    "+1.5",
    "1.",
    ".5",
    "-.5",
    "1.0",
    "01.5",
    "00.5",
    "1.50",
    "0.1",
    "1e5",
    "1E5",
    "1e+5",
    "1e-5",
    "1.5e3",
    "-1.5E-3",
    "1e999",
    "-1e999",
    "1e",
    "e5",
    ".inf",
    ".Inf",
    ".INF",
    "-.inf",
    "+.inf",
    ".nan",
    ".NaN",
    ".NAN",
    "-.nan",
    "+.nan",
    "inf",
    "-inf",
    "+inf",
    "infinity",
    "Infinity",
    "nan",
    "NaN",
    "-nan",
    "1.2.3",
    "10.0.0.1",
    "127.0.0.1:5555",
    "1:2",
    "1/2",
    "1 2",
    "12 apples",
    "1a",
    "1-2",
    "1+2",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "12:30:45",
    "190:20:30",
    "0.",
    "-",
    "-a",
    "--verbose",
    "+",
    "+a",
    ".",
    "..",
    ".a",
    "a",
    "abc",
    "n0",
    "node-1",
    "room.1.2",
    "room.*",
    "redis://127.0.0.1:6379",
    "tcp://*:5555",
    "a b",
    "a  b",
    "a\tb",
    "é",
    "日本",
    "a#b",
    "a: b",
    "-1-",
    "1e5x",
    "0x1Fg",
    "=",
    "<<",
    "?",
    "!",
    "@a",
    "`a",
    "%a",
    "a%",
    "a'b",
    "a\"b",
    "\\",
    "\\n",
    "a\\tb",
    "  a",
    "a  ",
    "\t",
    "\n",
    "a\nb",
    "a\n\nb",
    "{",
    "}",
    "[",
    "]",
    ",",
    "a,b",
    "*",
    "&",
    "|",
    ">",
    "#",
    "true ",
    " true",
    "null ",
    "1 ",
    " 1",
    "0.0",
    "-0.0",
    "1_000.5",
    "1,000",
    "1e1_0",
    "0b2",
    "0o",
    "0b",
    "0x_1",
    "0o_7",
    "0b_1",
    "+0x1",
    "+0o7",
    "-0b1",
    "+-1",
    "--1",
    "1e+",
    "1.5.",
    "1..5",
    "9.99999999999999999999",
    "123456789012345678901234567890.5",
];

fn plain(s: &str) -> String {
    s.to_owned()
}
fn single(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
fn double(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn scalar_spellings_read_the_same() {
    let mut taken = 0;
    for s in SPELLINGS {
        for quote in [plain, single, double] {
            let q = quote(s);
            for text in [
                format!("k: {q}\n"),
                format!("{q}: v\n"),
                format!("- {q}\n- x\n"),
                format!("m: [{q}, x]\n"),
                format!("m: {{{q}: 1, b: {q}}}\n"),
                format!("{q}\n"),
                format!("a:\n  b: {q}\n  c: 1\n"),
            ] {
                taken += usize::from(agrees(&text));
            }
        }
        // Block scalars are strings whatever they hold.
        for header in ["|", ">", "|-", ">+", "|2"] {
            let body: String = s.lines().map(|l| format!("    {l}\n")).collect();
            let text = format!("k: {header}\n{body}n: 1\n");
            taken += usize::from(agrees(&text));
        }
    }
    assert!(taken > 2_000, "the fast path took only {taken} texts");
}

#[test]
fn shapes_and_positions_read_the_same() {
    for text in [
        "a:\n",
        "a:\nb: 2\n",
        "- \n- a\n",
        "a: {}\nb: []\n",
        "---\na: 1\n",
        "---\na: 1\n...\n",
        "a: 1\n...\n",
        "# c\na: 1 # d\n# e\n",
        "? a\n: b\n",
        "a:\n- 1\n- 2\n",
        "a:\n  - b: 1\n    c: 2\n  - d\n",
        "a: [1, [2, [3, {b: c}]]]\n",
        "a: b\n  c\n",
        "a: 'x\n  y'\n",
        "\u{feff}a: 1\n",
        "a: 1\r\nb: 2\r\n",
        "a: 1\na: 2\n",
        "x",
        "[a, b]",
        "{a: 1}",
        "  a: 1\n  b: 2\n",
        "a: é\nb: 日本: x\n",
    ] {
        agrees(text);
    }
    let doc = parse("nodes:\n  a:\n    sub: [b, x]\n").unwrap();
    let Kind::Map(top) = &doc.kind else { panic!() };
    assert_eq!(top[0].1.span, super::Span::new(2, 3));
}

/// A small deterministic generator (xorshift) so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!x ",
    "!!str ",
    "<<: ",
    "#",
    "\n",
    "\n  ",
    "  ",
    "\t",
    "'",
    "\"",
    "|\n",
    ">\n",
    "---\n",
    "...\n",
    "? ",
    "~",
    "null",
    "true",
    "yes",
    "0x1F",
    "1.5",
    "-1",
    "007",
    ".inf",
    "1e5",
    "%YAML 1.2\n",
    "\\",
    "é",
];

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut data = seed.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, token.bytes()).for_each(drop);
            }
            1 if at < data.len() => {
                let end = (at + 1 + rng.below(12)).min(data.len());
                data.drain(at..end);
            }
            2 if at < data.len() => data[at] = b" :-[]{},#'\"\nab01."[rng.below(17)],
            3 => {
                let end = (at + rng.below(80)).min(data.len());
                let chunk = data[at..end].to_vec();
                data.splice(at..at, chunk).for_each(drop);
            }
            _ => data.truncate(at),
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

#[test]
fn mutated_files_read_the_same() {
    let mut seeds: Vec<String> = project_files()
        .into_iter()
        .filter(|text| text.len() < 4_000)
        .collect();
    seeds.push(mixed(10));
    seeds.push(rooms(20));
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut tried, mut taken) = (0, 0);
    for round in 0..6_000 {
        let seed = &seeds[round % seeds.len()];
        let text = mutate(&mut rng, seed);
        if text.trim().is_empty() {
            continue;
        }
        tried += 1;
        taken += usize::from(agrees(&text));
    }
    // Both outcomes must be well represented for the comparison to mean much.
    assert!(taken > tried / 10 && taken < tried, "{taken} of {tried}");
}

#[test]
fn unusual_texts_are_left_to_serde_saphyr() {
    let deep = format!("a: {}1{}\n", "[".repeat(22), "]".repeat(22));
    for text in [
        "a: &x 1\nb: *x\n",
        "a: &x 1\n",
        "a: *x\n",
        "a: !!str 1\n",
        "a: !tag x\n",
        "!!map {a: 1}\n",
        "base: &b {x: 1}\nc:\n  <<: *b\n",
        "c:\n  <<: {x: 1}\n",
        "a: 1\n---\nb: 2\n",
        "---\n---\n",
        "%YAML 1.2\n---\na: 1\n",
        "a: [1, 2\n",
        "a: b: c\n",
        "a:\n\t- b\n",
        "a: 'open\n",
        "[a]: 1\n",
        "{a: 1}: 2\n",
        "a: 007\n",
        "a: 0x1F\n",
        "a: .inf\n",
        "a: 1e999\n",
        "a: -x\n",
        "# only a comment\n",
        deep.as_str(),
    ] {
        assert!(
            fast_yaml::parse(text, allowance(text)).is_none(),
            "the fast path took:\n{text}"
        );
        // What the user sees is serde-saphyr's answer, errors included.
        assert_eq!(parse(text), parse_with_serde_saphyr(text), "{text}");
    }
}

#[test]
fn a_file_beyond_the_allowance_is_left_to_serde_saphyr() {
    let text = rooms(50);
    assert!(fast_yaml::parse(&text, 100).is_none());
    let Some(Value {
        kind: Kind::Map(_), ..
    }) = fast_yaml::parse(&text, allowance(&text))
    else {
        panic!("the fast path refused an ordinary file");
    };
}
