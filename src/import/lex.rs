//! Splits the input of `topo import` into commands: one per logical line
//! (a trailing `\` continues it), each a list of shell words with the line
//! and column they start at. Only the shell a person types to start the
//! chapter's programs is understood: quotes, `VAR=value`, redirections (which
//! do not change the wiring and are dropped) and a trailing `&`. Anything
//! that would need a shell to evaluate (`$VAR`, `;`, `|`, `&&`, subshells)
//! is an error at its position, not a guess.

use super::ImportError;

/// A shell word, unquoted, with where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub line: usize,
    pub column: usize,
}

/// One command line: its words, the line it starts on and its text (for the
/// comment that names it in the output).
#[derive(Clone, Debug)]
pub struct Command {
    pub line: usize,
    pub text: String,
    pub words: Vec<Word>,
}

/// A character of a logical line with its position in the input.
#[derive(Clone, Copy)]
struct At {
    c: char,
    line: usize,
    column: usize,
}

/// Commands of `input`, or every error found in it.
pub fn commands(input: &str) -> Result<Vec<Command>, Vec<ImportError>> {
    let mut commands = Vec::new();
    let mut errors = Vec::new();
    let mut chars: Vec<At> = Vec::new();
    let mut text = String::new();
    let mut first_line = 0;
    for (index, raw) in input.lines().enumerate() {
        let line = index + 1;
        if chars.is_empty() {
            first_line = line;
            text.clear();
        }
        let (body, continued) = match raw.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(body.trim());
        chars.extend(body.chars().enumerate().map(|(i, c)| At {
            c,
            line,
            column: i + 1,
        }));
        if continued {
            // The backslash-newline reads as a space between words.
            chars.push(At {
                c: ' ',
                line,
                column: body.chars().count() + 1,
            });
            continue;
        }
        match words(&chars) {
            Ok(words) if words.is_empty() => {}
            Ok(words) => commands.push(Command {
                line: first_line,
                text: text.clone(),
                words,
            }),
            Err(e) => errors.push(e),
        }
        chars.clear();
    }
    if !chars.is_empty() {
        errors.push(ImportError::new(
            first_line,
            1,
            "the line ends with `\\` but no line follows",
        ));
    }
    if errors.is_empty() {
        Ok(commands)
    } else {
        Err(errors)
    }
}

fn unsupported(at: At, what: &str) -> ImportError {
    ImportError::new(
        at.line,
        at.column,
        format!(
            "{what} is shell syntax `topo import` does not evaluate: write one command per line with literal values"
        ),
    )
}

/// The words of one logical line; redirections are dropped and a trailing
/// `&` ends the command.
fn words(chars: &[At]) -> Result<Vec<Word>, ImportError> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut background: Option<At> = None;
    while i < chars.len() {
        let at = chars[i];
        if at.c.is_whitespace() {
            i += 1;
            continue;
        }
        if let Some(bg) = background {
            return Err(ImportError::new(
                bg.line,
                bg.column,
                "`&` is only understood at the end of a command",
            ));
        }
        if at.c == '#' {
            break;
        }
        if let Some(next) = redirection(chars, i)? {
            i = next;
            continue;
        }
        match at.c {
            '&' if chars.get(i + 1).is_some_and(|n| n.c == '&') => {
                return Err(unsupported(at, "`&&`"));
            }
            '&' => {
                background = Some(at);
                i += 1;
                continue;
            }
            ';' | '|' | '(' | ')' | '`' | '<' | '{' | '}' => {
                return Err(unsupported(at, &format!("`{}`", at.c)));
            }
            _ => {}
        }
        let (word, next) = word(chars, i)?;
        out.push(word);
        i = next;
    }
    Ok(out)
}

/// A redirection starting at `i` (`>log`, `2>&1`, `>> log`, `&> log`,
/// `< /dev/null`): the index after it, or `None` when there is none.
fn redirection(chars: &[At], start: usize) -> Result<Option<usize>, ImportError> {
    let mut i = start;
    while chars.get(i).is_some_and(|a| a.c.is_ascii_digit()) {
        i += 1;
    }
    let is = |i: usize, c: char| chars.get(i).is_some_and(|a| a.c == c);
    if i == start && is(i, '&') && is(i + 1, '>') {
        i += 2;
    } else if is(i, '>') || (i == start && is(i, '<')) {
        i += 1;
        if is(i, '>') {
            i += 1;
        }
    } else {
        return Ok(None);
    }
    if is(i, '&') {
        // `2>&1`: onto another descriptor, no file.
        i += 1;
        let digits = i;
        while chars.get(i).is_some_and(|a| a.c.is_ascii_digit()) {
            i += 1;
        }
        if i == digits {
            return Err(unsupported(chars[start], "this redirection"));
        }
        return Ok(Some(i));
    }
    while chars.get(i).is_some_and(|a| a.c.is_whitespace()) {
        i += 1;
    }
    if i >= chars.len() {
        return Err(ImportError::new(
            chars[start].line,
            chars[start].column,
            "a redirection without a file",
        ));
    }
    let (_, next) = word(chars, i)?;
    Ok(Some(next))
}

/// One word from `start`: quotes removed, a backslash escapes the next
/// character.
fn word(chars: &[At], start: usize) -> Result<(Word, usize), ImportError> {
    let first = chars[start];
    let mut text = String::new();
    let mut i = start;
    while i < chars.len() {
        let at = chars[i];
        match at.c {
            c if c.is_whitespace() => break,
            ';' | '|' | '&' | '<' | '>' | '(' | ')' | '`' => break,
            '$' => return Err(unsupported(at, "a `$` expansion")),
            '\\' => {
                let Some(next) = chars.get(i + 1) else {
                    return Err(unsupported(at, "a lone `\\`"));
                };
                text.push(next.c);
                i += 2;
            }
            '\'' => {
                let close = (i + 1..chars.len())
                    .find(|&j| chars[j].c == '\'')
                    .ok_or_else(|| ImportError::new(at.line, at.column, "unterminated `'`"))?;
                text.extend(chars[i + 1..close].iter().map(|a| a.c));
                i = close + 1;
            }
            '"' => {
                i += 1;
                loop {
                    let Some(inner) = chars.get(i) else {
                        return Err(ImportError::new(at.line, at.column, "unterminated `\"`"));
                    };
                    match inner.c {
                        '"' => break,
                        '$' | '`' => return Err(unsupported(*inner, "an expansion")),
                        '\\' if chars.get(i + 1).is_some_and(|n| matches!(n.c, '"' | '\\')) => {
                            text.push(chars[i + 1].c);
                            i += 2;
                            continue;
                        }
                        c => text.push(c),
                    }
                    i += 1;
                }
                i += 1;
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    let word = Word {
        text,
        line: first.line,
        column: first.column,
    };
    Ok((word, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(input: &str) -> Vec<Vec<String>> {
        commands(input)
            .unwrap()
            .into_iter()
            .map(|c| c.words.into_iter().map(|w| w.text).collect())
            .collect()
    }

    #[test]
    fn quotes_continuations_redirections_and_background() {
        let input = "# a comment\n\nnode 'app' \"--http\" 8080 > a.log 2>&1 &\nnode app \\\n  --pub 5000 </dev/null\n";
        assert_eq!(
            texts(input),
            [
                vec!["node", "app", "--http", "8080"],
                vec!["node", "app", "--pub", "5000"]
            ]
        );
        let cmds = commands(input).unwrap();
        assert_eq!(cmds[1].line, 4);
        assert_eq!(cmds[1].text, "node app --pub 5000 </dev/null");
        assert_eq!((cmds[1].words[2].line, cmds[1].words[2].column), (5, 3));
    }

    #[test]
    fn shell_it_cannot_evaluate_is_an_error_at_its_column() {
        for (input, column) in [
            ("node app --http $PORT", 17),
            ("node app 8080; node app 8081", 14),
            ("node app 8080 && echo", 15),
            ("node app 8080 & node app 8081", 15),
            ("node app 'x", 10),
            ("node app | tee", 10),
        ] {
            let errors = commands(input).unwrap_err();
            assert_eq!((errors[0].line, errors[0].column), (1, column), "{input}");
        }
        let errors = commands("node app \\").unwrap_err();
        assert!(errors[0].message.contains("no line follows"));
    }
}
