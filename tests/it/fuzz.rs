//! A bounded fuzz run of the loader in every test run: mutated, truncated
//! and random inputs must never panic, hang or blow the budget. Seeded, so
//! a failure repeats; `TOPO_FUZZ_SECS` runs it longer (CI's fuzz step).

use std::path::PathBuf;
use std::time::{Duration, Instant};
use topo::check::check_bytes;

/// xorshift64*: deterministic and dependency-free.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "nodes:",
    "zmq:",
    "redis:",
    "sub:",
    "pub:",
    "relay: true",
    "http:",
    "broker:",
    "patterns:",
    "expect:",
    "deliveries:",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "-",
    "&a",
    "*a",
    "<<:",
    "${X}",
    "${X:-1}",
    "\n",
    "\n  ",
    "\t",
    "\"",
    "'",
    "#",
    "? ",
    "!!str",
    "|",
    ">",
    "65536",
    "-1",
    "9999999999999999999999",
    "tcp://",
    "redis://:p@h:1/9",
    "\u{0}",
    "\u{feff}",
    "[*",
    "ab",
    "\\",
];

fn corpus() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["topologies", "tests/errors"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            files.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    files
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 => data.truncate(at),
            1 => data
                .splice(at..at, TOKENS[rng.below(TOKENS.len())].bytes())
                .for_each(drop),
            2 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            3 if at < data.len() => {
                let end = (at + rng.below(40)).min(data.len());
                data.drain(at..end);
            }
            4 => {
                let end = (at + rng.below(200)).min(data.len());
                let chunk = data[at..end].to_vec();
                data.splice(at..at, chunk).for_each(drop);
            }
            _ => data.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
        }
    }
    data
}

fn deep_nesting(depth: usize, open: &str, close: &str) -> Vec<u8> {
    format!("nodes: {}{}", open.repeat(depth), close.repeat(depth)).into_bytes()
}

/// How long a fuzz loop runs: 3 s, or `TOPO_FUZZ_SECS`.
pub fn budget() -> Duration {
    Duration::from_secs(
        std::env::var("TOPO_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    )
}

#[test]
fn loader_survives_hostile_input() {
    let budget = budget();
    let corpus = corpus();
    let mut rng = Rng(0x7090_5eed);
    let mut inputs: Vec<Vec<u8>> = vec![
        deep_nesting(100_000, "[", "]"),
        deep_nesting(100_000, "{a: ", "}"),
        "- ".repeat(50_000).into_bytes(),
        format!("nodes:\n  a:\n    http: {}\n", "9".repeat(10_000)).into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x80],
        b"\xef\xbb\xbfnodes: {a: {}}".to_vec(),
    ];
    let started = Instant::now();
    let mut runs = 0u64;
    let mut slowest = Duration::ZERO;
    loop {
        let input = match inputs.pop() {
            Some(input) => input,
            None if started.elapsed() >= budget => break,
            None => {
                let seed = &corpus[rng.below(corpus.len())];
                mutate(&mut rng, seed)
            }
        };
        let one = Instant::now();
        let checked = check_bytes("fuzz.yaml", "fuzz", &input, &|name| {
            (name == "X").then(|| "1".to_owned())
        });
        // `topo test --bless` edits such text by lines: never a panic.
        let text = String::from_utf8_lossy(&input);
        let _ = topo::testing::bless::with_section(&text, "expect", "expect: {}\n");
        // Excerpts are cut, escaped and redacted: none of it may panic.
        let _ = checked.render();
        // Advice meant for programmers using a library never reaches users.
        for d in &checked.diagnostics {
            assert!(
                ![
                    "from_str",
                    "Options",
                    "Policy",
                    "serde",
                    "Spanned",
                    "deserializ"
                ]
                .iter()
                .any(|w| d.message.contains(w)),
                "library wording: {}\ninput: {:?}",
                d.message,
                String::from_utf8_lossy(&input)
            );
        }
        slowest = slowest.max(one.elapsed());
        runs += 1;
    }
    eprintln!(
        "fuzz: {runs} inputs in {:?}, slowest {slowest:?}",
        started.elapsed()
    );
    assert!(runs > 100, "the fuzz loop barely ran ({runs} inputs)");
    // Debug builds; release is about ten times faster.
    assert!(
        slowest < Duration::from_secs(2),
        "one input took {slowest:?}"
    );
}
