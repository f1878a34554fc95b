use super::*;

/// A masked client frame: `first` is FIN/RSV/opcode as sent.
fn client(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn text(s: &str) -> Vec<u8> {
    client(0x81, s.as_bytes(), [7, 1, 200, 33])
}

/// Every event (or the first error) of `bytes` fed at once.
fn events(max: usize, bytes: &[u8]) -> Result<Vec<Event>, FrameError> {
    let mut decoder = Decoder::new(max);
    let mut input = bytes;
    let mut out = Vec::new();
    while let Some(event) = decoder.feed(&mut input)? {
        out.push(event);
    }
    assert!(input.is_empty());
    Ok(out)
}

fn first_error(max: usize, bytes: &[u8]) -> FrameError {
    events(max, bytes).expect_err("refused")
}

#[test]
fn a_text_frame_is_unmasked_and_joined_with_its_fragments() {
    assert_eq!(
        events(100, &text("héllo")).unwrap(),
        [Event::Text("héllo".into())]
    );
    let mut bytes = client(0x01, b"frag", [1, 2, 3, 4]);
    bytes.extend(client(0x89, b"p", [9, 9, 9, 9])); // a ping in between
    bytes.extend(client(0x00, b"men", [5, 6, 7, 8]));
    bytes.extend(client(0x80, b"ted", [0, 0, 0, 0]));
    assert_eq!(
        events(100, &bytes).unwrap(),
        [
            Event::Fragment,
            Event::Ping(b"p".to_vec()),
            Event::Fragment,
            Event::Text("fragmented".into())
        ]
    );
}

#[test]
fn lengths_of_16_and_64_bits_are_read() {
    for len in [125, 126, 65_535, 65_536, 70_000] {
        let s = "a".repeat(len);
        assert_eq!(events(1 << 20, &text(&s)).unwrap(), [Event::Text(s)]);
    }
}

#[test]
fn control_frames_and_close_codes() {
    let ping = client(0x89, b"abc", [1, 2, 3, 4]);
    assert_eq!(events(10, &ping).unwrap(), [Event::Ping(b"abc".to_vec())]);
    assert_eq!(
        events(10, &client(0x8A, b"x", [1, 2, 3, 4])).unwrap(),
        [Event::Pong]
    );
    assert_eq!(
        events(10, &client(0x88, &[], [1, 2, 3, 4])).unwrap(),
        [Event::Close(None)]
    );
    let mut bye = 1000u16.to_be_bytes().to_vec();
    bye.extend_from_slice(b"bye");
    assert_eq!(
        events(10, &client(0x88, &bye, [1, 2, 3, 4])).unwrap(),
        [Event::Close(Some(1000))]
    );
    for bad in [&[3u8][..], &1005u16.to_be_bytes(), &999u16.to_be_bytes()] {
        let err = first_error(10, &client(0x88, bad, [1, 2, 3, 4]));
        assert_eq!(err, FrameError::BadClose, "{bad:?}");
    }
    let reason = [0x03, 0xE8, 0xFF];
    assert_eq!(
        first_error(10, &client(0x88, &reason, [1, 2, 3, 4])).close_code(),
        CloseCode::InvalidData
    );
}

#[test]
fn framing_errors_are_protocol_errors() {
    let unmasked = [0x81, 0x02, b'h', b'i'];
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (unmasked.to_vec(), FrameError::Unmasked),
        (client(0xC1, b"x", [0; 4]), FrameError::Reserved(0x40)),
        (client(0x83, b"x", [0; 4]), FrameError::UnknownOpcode(3)),
        (client(0x8B, b"x", [0; 4]), FrameError::UnknownOpcode(0xB)),
        (
            client(0x89, &[0; 126], [0; 4]),
            FrameError::ControlTooLong(126),
        ),
        (client(0x09, b"x", [0; 4]), FrameError::FragmentedControl),
        (client(0x80, b"x", [0; 4]), FrameError::StrayContinuation),
        (
            [client(0x01, b"a", [0; 4]), client(0x81, b"b", [0; 4])].concat(),
            FrameError::Interleaved,
        ),
        (
            vec![0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4],
            FrameError::LengthTopBit,
        ),
    ];
    for (bytes, expected) in cases {
        let err = first_error(1 << 20, &bytes);
        assert_eq!(err, expected);
        assert_eq!(err.close_code(), CloseCode::Protocol, "{err}");
    }
}

#[test]
fn the_size_limit_is_checked_on_the_header_before_the_payload_arrives() {
    let mut decoder = Decoder::new(1024);
    // Only the header of a 16 MiB frame: refused at once, nothing allocated.
    let head = &text(&"x".repeat(70_000))[..14];
    let mut input = head;
    let err = decoder.feed(&mut input).unwrap_err();
    assert_eq!(err.close_code(), CloseCode::TooBig);
    assert_eq!(decoder.message.capacity(), 0);
    // At the limit is fine, one byte over is not, also across fragments.
    assert!(events(1024, &text(&"y".repeat(1024))).is_ok());
    let over = [
        client(0x01, &[b'a'; 600], [1; 4]),
        client(0x80, &[b'a'; 425], [1; 4]),
    ]
    .concat();
    assert_eq!(
        first_error(1024, &over),
        FrameError::TooBig {
            len: 1025,
            max: 1024
        }
    );
}

#[test]
fn invalid_utf8_and_binary() {
    let bad = client(0x81, &[b'h', 0xFF, 0xFE], [1, 2, 3, 4]);
    assert_eq!(first_error(100, &bad).close_code(), CloseCode::InvalidData);
    // Split inside a character across fragments is fine.
    let e = "é".as_bytes();
    let split = [client(0x01, &e[..1], [1; 4]), client(0x80, &e[1..], [2; 4])].concat();
    assert_eq!(
        events(100, &split).unwrap(),
        [Event::Fragment, Event::Text("é".into())]
    );
    assert_eq!(
        events(100, &client(0x82, b"bin", [0; 4])).unwrap()[0],
        Event::Binary
    );
}

#[test]
fn discarding_skips_payloads_until_the_close_frame() {
    let mut decoder = Decoder::new(16);
    let big = client(0x81, &[b'x'; 5000], [1, 2, 3, 4]);
    let mut input = &big[..100];
    assert!(decoder.feed(&mut input).is_err());
    decoder.discard();
    assert_eq!(decoder.feed(&mut input).unwrap(), None);
    let mut input = &big[100..];
    assert_eq!(decoder.feed(&mut input).unwrap(), None);
    assert!(input.is_empty());
    let rest = [
        client(0x82, b"bin", [0; 4]),
        client(0x88, &[3, 232], [0; 4]),
    ]
    .concat();
    let mut input = &rest[..];
    assert_eq!(decoder.feed(&mut input).unwrap(), Some(Event::Close(None)));
    assert_eq!(decoder.message.capacity(), 0);
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Random valid streams (texts, fragments, pings, pongs), cut at random
/// places: the events are those of the stream fed whole, whatever the cuts.
#[test]
fn random_splits_of_valid_frames_decode_the_same() {
    let mut rng = Rng(0x5eed_f00d);
    for _ in 0..100 {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..rng.below(12) + 1 {
            let mask = (rng.next() as u32).to_be_bytes();
            let len = match rng.below(4) {
                0 => rng.below(126),
                1 => 126 + rng.below(400),
                2 => rng.below(8),
                _ => 65_536 + rng.below(100),
            };
            let s: String = (0..len)
                .map(|i| ['a', 'é', '€', '😀'][(i + len) % 4])
                .take(len)
                .collect();
            match rng.below(5) {
                0 => {
                    let p = &s.as_bytes()[..s.len().min(MAX_CONTROL)];
                    stream.extend(client(0x89, p, mask));
                    expected.push(Event::Ping(p.to_vec()));
                }
                1 => {
                    stream.extend(client(0x8A, &[], mask));
                    expected.push(Event::Pong);
                }
                2 => {
                    // The message in three fragments, cut on byte (not char) boundaries.
                    let b = s.as_bytes();
                    let (x, y) = (b.len() / 3, 2 * b.len() / 3);
                    stream.extend(client(0x01, &b[..x], mask));
                    stream.extend(client(0x00, &b[x..y], mask));
                    stream.extend(client(0x80, &b[y..], mask));
                    expected.extend([Event::Fragment, Event::Fragment, Event::Text(s)]);
                }
                _ => {
                    stream.extend(client(0x81, s.as_bytes(), mask));
                    expected.push(Event::Text(s));
                }
            }
        }
        let mut decoder = Decoder::new(1 << 20);
        let mut got = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let most = if rng.below(2) == 0 { 16 } else { 9000 };
            let cut = (at + 1 + rng.below(most)).min(stream.len());
            let mut input = &stream[at..cut];
            while let Some(event) = decoder.feed(&mut input).unwrap() {
                got.push(event);
            }
            assert!(input.is_empty());
            at = cut;
        }
        assert!(!decoder.mid_frame());
        assert_eq!(got, expected);
    }
}

/// Random bytes never panic, and what is refused is refused with one of
/// the codes a node sends.
#[test]
fn random_bytes_are_refused_or_decoded_never_a_panic() {
    let mut rng = Rng(0xbad_b17e);
    for _ in 0..2000 {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let mut decoder = Decoder::new(32);
        let mut input = &bytes[..];
        loop {
            match decoder.feed(&mut input) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    let code = e.close_code();
                    assert!(matches!(
                        code,
                        CloseCode::Protocol | CloseCode::TooBig | CloseCode::InvalidData
                    ));
                    break;
                }
            }
        }
    }
}

#[test]
fn server_frames_are_unmasked_with_the_shortest_length() {
    let f = TextFrame::new("hi");
    assert_eq!(&f.wire()[..], b"\x81\x02hi");
    assert!(f == "hi");
    let long = "z".repeat(300);
    let f = TextFrame::new(&long);
    assert_eq!(&f.wire()[..4], &[0x81, 126, 1, 44]);
    assert_eq!(f.payload(), long.as_bytes());
    let huge = "z".repeat(70_000);
    let f = TextFrame::new(&huge);
    assert_eq!(f.wire()[1], 127);
    assert_eq!(f.payload().len(), 70_000);
    assert_eq!(&close(Some(1009), "too big")[..4], &[0x88, 9, 0x03, 0xF1]);
    assert_eq!(&close(None, "ignored")[..], &[0x88, 0]);
    assert_eq!(&pong(b"abc")[..], b"\x8A\x03abc");
    assert_eq!(PING, &[0x89, 0]);
}
