//! `glob_match` against a real redis-server: every pattern is PSUBSCRIBEd,
//! every channel PUBLISHed, and the deliveries must equal the predictions.

use std::collections::{BTreeSet, HashSet};

use topo::glob::glob_match;

use crate::util::{RedisServer, RespClient};

const SENTINEL: &[u8] = b"__sentinel__";

fn patterns() -> Vec<Vec<u8>> {
    let fixed: &[&[u8]] = &[
        b"",
        b"*",
        b"**",
        b"?",
        b"??",
        b"???*",
        b"chat.*",
        b"chat.?",
        b"chat.*.in",
        b"*.in",
        b"*room*",
        b"chat.room[12]",
        b"chat.room[^1]",
        b"chat.room[0-9]",
        b"chat.room[9-0]",
        b"[a-z]*",
        b"[z-a]",
        b"[abc]",
        b"[^a]",
        b"[^abc]*",
        b"[a-]",
        b"[a-",
        b"[-a]",
        b"[]",
        b"[]]",
        b"[]a]",
        b"[^]",
        b"[^]]",
        b"[\\]]",
        b"[\\]",
        b"[\\",
        b"[",
        b"[^",
        b"a[",
        b"a[^",
        b"[abc",
        b"chat.room[1",
        b"[a-]x]",
        b"\\*",
        b"\\?",
        b"\\[a]",
        b"a\\*b",
        b"\\",
        b"a\\",
        b"*\\",
        b"\\\\",
        b"\\a",
        b"a*b*c",
        b"*a*a*a*a*a*b",
        b"a***b",
        b"*.*",
        b"news.[!a]*",
        b"caf\xc3\xa9",
        b"caf?",
        b"caf??",
        b"caf[\xc3][\xa9]",
        b"[\x80-\xff]*",
        b"[a-\xff]",
        b"[\xff-a]*",
        b"?\xff",
        b"a\0b",
        b"[*]",
        b"[?]x",
    ];
    let mut out: Vec<Vec<u8>> = fixed.iter().map(|p| p.to_vec()).collect();
    // Around Redis's nesting guard (1000 nested star groups).
    out.push(b"*a".repeat(1000));
    out.push(b"*a".repeat(1001));
    let mut trailing = b"*a".repeat(1000);
    trailing.push(b'*');
    out.push(trailing);
    out.extend(random_strings(0x5eed, 150, b"ab*?[]^-\\", 6));
    out
}

fn channels() -> Vec<Vec<u8>> {
    let fixed: &[&[u8]] = &[
        b"",
        b"a",
        b"b",
        b"c",
        b"d",
        b"m",
        b"x",
        b"z",
        b"A",
        b"-",
        b"]",
        b"[",
        b"^",
        b"_",
        b"\\",
        b"*",
        b"?",
        b"ab",
        b"aab",
        b"abc",
        b"aXbYc",
        b"a*b",
        b"a\\b",
        b"a\\",
        b"a]",
        b"x]",
        b"[a]",
        b"chat",
        b"chat.",
        b"chat.1",
        b"chat.room1",
        b"chat.room2",
        b"chat.room9",
        b"chat.room.in",
        b"chat.x.in",
        b"room",
        b"news.!x",
        b"news.ax",
        b"caf\xc3\xa9",
        b"cafe",
        b"\xff",
        b"\x80",
        b"a\xff",
        b"a\0b",
        b"ababababab",
        b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ];
    let mut out: Vec<Vec<u8>> = fixed.iter().map(|c| c.to_vec()).collect();
    out.push(b"a".repeat(1100));
    out.extend(random_strings(0xc4a7, 80, b"ab]-\\^", 5));
    out
}

/// Deterministic random strings (xorshift), non-empty, deduplicated later.
fn random_strings(seed: u64, count: usize, alphabet: &[u8], max_len: u64) -> Vec<Vec<u8>> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = 1 + next() % max_len;
            (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect()
        })
        .collect()
}

fn dedup(items: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|i| i.as_slice() != SENTINEL && seen.insert(i.clone()))
        .collect()
}

fn show(bytes: &[u8]) -> String {
    if bytes.len() > 40 {
        format!("{}… ({} bytes)", bytes[..40].escape_ascii(), bytes.len())
    } else {
        format!("\"{}\"", bytes.escape_ascii())
    }
}

#[test]
fn glob_match_agrees_with_redis_psubscribe() {
    let patterns = dedup(patterns());
    let channels = dedup(channels());
    assert!(patterns.len() >= 40 && channels.len() >= 40);

    let server = RedisServer::start();
    let mut sub = RespClient::connect(server.port);
    let mut args: Vec<&[u8]> = vec![b"PSUBSCRIBE", SENTINEL];
    args.extend(patterns.iter().map(Vec::as_slice));
    sub.send(&args);
    for _ in 0..=patterns.len() {
        let reply = sub.read();
        assert_eq!(reply[0], b"psubscribe", "unexpected reply {reply:?}");
    }

    let mut publisher = RespClient::connect(server.port);
    for channel in channels.iter().map(Vec::as_slice).chain([SENTINEL]) {
        publisher.send(&[b"PUBLISH", channel, channel]);
        publisher.read();
    }

    let mut observed = BTreeSet::new();
    loop {
        let msg = sub.read();
        assert_eq!(msg.len(), 4, "unexpected message {msg:?}");
        assert_eq!(msg[0], b"pmessage");
        let (pattern, channel, payload) = (&msg[1], &msg[2], &msg[3]);
        assert_eq!(channel, payload);
        if channel == SENTINEL {
            if pattern == SENTINEL {
                break;
            }
            continue;
        }
        assert!(observed.insert((pattern.clone(), channel.clone())));
    }

    let mut predicted = BTreeSet::new();
    for pattern in &patterns {
        for channel in &channels {
            if glob_match(pattern, channel) {
                predicted.insert((pattern.clone(), channel.clone()));
            }
        }
    }

    let diff: Vec<String> = predicted
        .symmetric_difference(&observed)
        .map(|(p, c)| {
            let who = if observed.contains(&(p.clone(), c.clone())) {
                "redis only"
            } else {
                "predicted only"
            };
            format!("{who}: pattern {} channel {}", show(p), show(c))
        })
        .collect();
    assert!(
        diff.is_empty(),
        "{} of {} pairs differ:\n{}",
        diff.len(),
        patterns.len() * channels.len(),
        diff.join("\n")
    );
    eprintln!(
        "{} patterns × {} channels: {} deliveries, all predicted",
        patterns.len(),
        channels.len(),
        observed.len()
    );
}
