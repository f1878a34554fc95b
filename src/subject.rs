//! NATS subjects: which names a file may publish and subscribe with, and
//! whether a subscription's filter matches a published subject, decided the
//! way nats-server's sublist decides it (a test checks it against the real
//! server). A leaf: the compiler, the graph and the runtime use it.
//!
//! A subject is tokens joined by `.`. In a filter, a token that is exactly
//! `*` matches any one token and a last token that is exactly `>` matches
//! one or more; `*` or `>` inside a longer token is an ordinary character.

/// Why a subject or filter written in the file was refused (the server
/// would refuse it too, or it could never be published on).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("a subject cannot be empty")]
    Empty,
    #[error("subject `{0}` contains white space, which ends a subject on the wire")]
    WhiteSpace(String),
    #[error("subject `{0}` has an empty token (a leading, trailing or doubled `.`)")]
    EmptyToken(String),
    #[error("`>` must be the last token of a subscription (`{0}`)")]
    FullWildcardNotLast(String),
    #[error(
        "the publish subject `{0}` has a wildcard token; publish on a literal subject (wildcards belong in `subscribe:`)"
    )]
    WildcardInPublish(String),
    #[error("queue group `{0}` contains white space")]
    QueueWhiteSpace(String),
    #[error("a queue group name cannot be empty")]
    QueueEmpty,
}

fn tokens(text: &str) -> Result<std::str::Split<'_, char>, SubjectError> {
    if text.is_empty() {
        return Err(SubjectError::Empty);
    }
    if text.chars().any(char::is_whitespace) {
        return Err(SubjectError::WhiteSpace(text.to_owned()));
    }
    if text.split('.').any(str::is_empty) {
        return Err(SubjectError::EmptyToken(text.to_owned()));
    }
    Ok(text.split('.'))
}

/// A subject a node may publish on: no wildcard token.
pub fn check_publish(text: &str) -> Result<(), SubjectError> {
    if tokens(text)?.any(|t| t == "*" || t == ">") {
        return Err(SubjectError::WildcardInPublish(text.to_owned()));
    }
    Ok(())
}

/// A subscription filter: `*` anywhere as a whole token, `>` last only.
pub fn check_filter(text: &str) -> Result<(), SubjectError> {
    let list: Vec<&str> = tokens(text)?.collect();
    if list[..list.len() - 1].contains(&">") {
        return Err(SubjectError::FullWildcardNotLast(text.to_owned()));
    }
    Ok(())
}

/// A queue group name: any non-empty text without white space.
pub fn check_queue(text: &str) -> Result<(), SubjectError> {
    if text.is_empty() {
        return Err(SubjectError::QueueEmpty);
    }
    if text.chars().any(char::is_whitespace) {
        return Err(SubjectError::QueueWhiteSpace(text.to_owned()));
    }
    Ok(())
}

/// True when a subscription on `filter` receives a message published on
/// `subject`. Both are taken as valid (checked by the functions above).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    let mut filter = filter.split('.').peekable();
    while let Some(f) = filter.next() {
        let Some(s) = subject.next() else {
            return false;
        };
        match f {
            ">" if filter.peek().is_none() => return true,
            "*" => {}
            literal if literal == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_whole_tokens() {
        let cases = [
            ("chat", "chat", true),
            ("chat", "chat.a", false),
            ("chat.*", "chat.a", true),
            ("chat.*", "chat", false),
            ("chat.*", "chat.a.b", false),
            ("chat.>", "chat.a.b", true),
            ("chat.>", "chat", false),
            (">", "chat", true),
            (">", "a.b.c", true),
            ("*", "a.b", false),
            ("*.b.>", "a.b.c", true),
            ("*.b.>", "a.b", false),
            ("a*.b", "a*.b", true),
            ("a*.b", "ax.b", false),
            ("a.>x", "a.>x", true),
            ("a.>x", "a.b", false),
        ];
        for (filter, subject, expected) in cases {
            assert_eq!(
                subject_matches(filter, subject),
                expected,
                "{filter} ~ {subject}"
            );
        }
    }

    #[test]
    fn the_file_is_checked_like_the_server_checks() {
        assert!(check_publish("chat.room1").is_ok());
        assert_eq!(
            check_publish("chat.*"),
            Err(SubjectError::WildcardInPublish("chat.*".into()))
        );
        assert_eq!(check_publish(""), Err(SubjectError::Empty));
        assert_eq!(
            check_publish("a..b"),
            Err(SubjectError::EmptyToken("a..b".into()))
        );
        assert_eq!(
            check_publish(".a"),
            Err(SubjectError::EmptyToken(".a".into()))
        );
        assert_eq!(
            check_publish("a b"),
            Err(SubjectError::WhiteSpace("a b".into()))
        );
        assert!(check_filter("chat.*.x.>").is_ok());
        assert_eq!(
            check_filter("a.>.b"),
            Err(SubjectError::FullWildcardNotLast("a.>.b".into()))
        );
        assert!(check_queue("workers").is_ok());
        assert_eq!(check_queue(""), Err(SubjectError::QueueEmpty));
    }
}
