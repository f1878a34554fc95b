//! RabbitMQ's topic-exchange matching: a routing key and a binding key are
//! words split on `.`; in a binding `*` stands for exactly one word and `#`
//! for zero or more. A leaf like `glob`: the compiler and the graph use it,
//! and `tests/it/topic_rabbitmq.rs` checks it against a real server.
//!
//! RabbitMQ splits the empty key into zero words (so `#` matches it and `*`
//! does not) and `a.` into `a` and an empty word; `*` and `#` are special
//! only as whole words (`a*` is the literal word `a*`).

/// True when a topic exchange routes `key` to a queue bound with `binding`.
pub fn topic_match(binding: &str, key: &str) -> bool {
    let pattern: Vec<&str> = words(binding).collect();
    let key: Vec<&str> = words(key).collect();
    // reach[j]: the first `i` pattern words can match the first `j` key words.
    let mut reach = vec![false; key.len() + 1];
    reach[0] = true;
    for word in &pattern {
        match *word {
            "#" => {
                // Zero or more words: once reachable, every later prefix is.
                for j in 1..=key.len() {
                    reach[j] |= reach[j - 1];
                }
            }
            _ => {
                for j in (1..=key.len()).rev() {
                    reach[j] = reach[j - 1] && (*word == "*" || *word == key[j - 1]);
                }
                reach[0] = false;
            }
        }
    }
    reach[key.len()]
}

/// RabbitMQ's split: the empty key has no words at all.
fn words(text: &str) -> impl Iterator<Item = &str> {
    let none = text.is_empty();
    text.split('.').filter(move |_| !none)
}

#[cfg(test)]
mod tests {
    use super::topic_match;

    #[test]
    fn star_is_one_word_and_hash_any_number() {
        let cases = [
            ("chat.*", "chat.general", true),
            ("chat.*", "chat", false),
            ("chat.*", "chat.a.b", false),
            ("chat.#", "chat", true),
            ("chat.#", "chat.a.b", true),
            ("#", "", true),
            ("*", "", false),
            ("", "", true),
            ("", "a", false),
            ("#.b", "b", true),
            ("#.b", "a.b", true),
            ("#.b", "a.c", false),
            ("a.#.b", "a.b", true),
            ("a.#.b", "a.x.y.b", true),
            ("*.*", "a.", true),
            ("a*", "ab", false),
            ("a*", "a*", true),
            ("#.#", "a.b.c", true),
            ("*.#.*", "a", false),
            ("*.#.*", "a.b", true),
        ];
        for (binding, key, expected) in cases {
            assert_eq!(topic_match(binding, key), expected, "{binding:?} ~ {key:?}");
        }
    }
}
