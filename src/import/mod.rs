//! `topo import`: the command lines a person typed to start the chapter's
//! chat servers (one per line, a Procfile, or a shell script of them) become
//! one topology file. Each line is read as the chapter's programs read their
//! arguments, and every line that is not one of them is an error with its
//! position: the output describes exactly the processes the lines start.
//!
//! - `node app --http H --pub P --sub S...`: the ZeroMQ program (PUB binds
//!   127.0.0.1:P, SUB connects to 127.0.0.1:S, topic and filter `chat`);
//! - `node app H`: the single server or the Redis one (channel
//!   `chat_messages`); the same line starts both, so `--bare` or a
//!   `REDIS_URL=` on the line says which.

mod lex;

use std::collections::HashMap;
use std::fmt::Write;

/// One problem of the input, at its 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ImportError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ImportError {
    fn new(line: usize, column: usize, message: impl Into<String>) -> Self {
        ImportError {
            line,
            column,
            message: message.into(),
        }
    }

    fn at(word: &lex::Word, message: impl Into<String>) -> Self {
        Self::new(word.line, word.column, message)
    }
}

/// Which program a bare-port line (`node app 8080`) starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Bare {
    /// The chapter's first server: clients of one instance only.
    Single,
    /// The chapter's Redis server: channel `chat_messages`.
    Redis,
}

pub struct Options {
    /// The topology's `name:`.
    pub name: String,
    /// How the input is named in the comments (a path, or `stdin`).
    pub source: String,
    pub bare: Option<Bare>,
    /// The `$schema` the editor comment points at.
    pub schema: String,
}

/// The chapter's programs listen on 8080 when no port is given.
const DEFAULT_HTTP: u16 = 8080;
/// The Redis server the chapter's program connects to, overridable as the
/// shipped examples are.
const DEFAULT_REDIS: &str = "${REDIS_URL:-redis://127.0.0.1:6379}";
/// Lines of a shell script that start nothing and so change no wiring.
const SHELL_NO_OPS: &[&str] = &["wait", "set", "cd", "sleep", "echo", "trap", "exit"];

#[derive(Debug)]
enum Kind {
    Single,
    Redis {
        url: String,
    },
    Zmq {
        publish: u16,
        subs: Vec<(u16, lex::Word)>,
    },
}

#[derive(Debug)]
struct Node {
    name: String,
    /// `None`: no port given, the program's default.
    http: Option<u16>,
    kind: Kind,
    line: usize,
    text: String,
    /// Why the kind is what it is, when the line alone does not say.
    note: Option<&'static str>,
}

/// The topology file for `input`, or every error found in it.
pub fn import(input: &str, options: &Options) -> Result<String, Vec<ImportError>> {
    let commands = lex::commands(input)?;
    let mut errors = Vec::new();
    let mut nodes = Vec::new();
    for command in &commands {
        match node(command, options.bare) {
            Ok(Some(node)) => nodes.push(node),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() && nodes.is_empty() {
        errors.push(ImportError::new(
            1,
            1,
            "no command line starts one of the chapter's programs (`node app ...`)",
        ));
    }
    check_clashes(&nodes, &mut errors);
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(errors);
    }
    Ok(render(&nodes, options))
}

/// The node a command starts; `None` for a shell line that starts nothing.
fn node(command: &lex::Command, bare: Option<Bare>) -> Result<Option<Node>, ImportError> {
    let mut words = command.words.as_slice();
    let mut procfile_name = None;
    if let Some(name) = words[0].text.strip_suffix(':')
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        procfile_name = Some(name.to_owned());
        words = &words[1..];
    }
    let mut redis_url = None;
    while let Some((first, rest)) = words.split_first() {
        let Some((var, value)) = first.text.split_once('=') else {
            break;
        };
        if var != "REDIS_URL" {
            return Err(ImportError::at(
                first,
                format!("`{var}` is not read by the chapter's programs (only REDIS_URL is)"),
            ));
        }
        redis_url = Some(value.to_owned());
        words = rest;
    }
    if let Some((first, rest)) = words.split_first()
        && matches!(first.text.as_str(), "exec" | "nohup")
    {
        words = rest;
    }
    let Some((program, rest)) = words.split_first() else {
        let last = command.words.last().expect("a command has words");
        return Err(ImportError::at(last, "no program after this"));
    };
    if procfile_name.is_none()
        && redis_url.is_none()
        && SHELL_NO_OPS.contains(&program.text.as_str())
    {
        return Ok(None);
    }
    if !(program.text == "node" || program.text == "nodejs" || program.text.ends_with("/node")) {
        return Err(ImportError::at(
            program,
            format!(
                "expected `node` starting one of the chapter's programs, found `{}`",
                program.text
            ),
        ));
    }
    let Some((script, args)) = rest.split_first() else {
        return Err(ImportError::at(program, "`node` without a program to run"));
    };
    if script.text.starts_with('-') {
        return Err(ImportError::at(
            script,
            format!(
                "node option `{}` is not imported: name the program first",
                script.text
            ),
        ));
    }
    let (http, kind, note) = if args.iter().any(|a| a.text.starts_with('-')) {
        if redis_url.is_some() {
            return Err(ImportError::at(
                &command.words[0],
                "REDIS_URL on a line of the ZeroMQ program (--http/--pub/--sub), which does not use Redis",
            ));
        }
        let (http, kind) = zmq_args(program, args)?;
        (http, kind, None)
    } else {
        let http = match args {
            [] => None,
            [port] => Some(port_of(port, "the HTTP port")?),
            [_, extra, ..] => {
                return Err(ImportError::at(
                    extra,
                    format!(
                        "unexpected argument `{}`: the chapter's servers take one port",
                        extra.text
                    ),
                ));
            }
        };
        let (kind, note) = match (redis_url, bare) {
            (Some(url), _) => (Kind::Redis { url }, None),
            (None, Some(Bare::Redis)) => (
                Kind::Redis {
                    url: DEFAULT_REDIS.into(),
                },
                Some("the Redis server (--bare redis)"),
            ),
            (None, Some(Bare::Single)) => (Kind::Single, Some("the single server (--bare single)")),
            (None, None) => {
                return Err(ImportError::at(
                    script,
                    "`node app PORT` starts the chapter's single server or its Redis server: \
                     say which with --bare single or --bare redis (or REDIS_URL=... on the line)",
                ));
            }
        };
        (http, kind, note)
    };
    let name = procfile_name.unwrap_or_else(|| format!("n{}", http.unwrap_or(DEFAULT_HTTP)));
    Ok(Some(Node {
        name,
        http,
        kind,
        line: command.line,
        text: command.text.clone(),
        note,
    }))
}

/// The flags of the ZeroMQ program, read as its argument parser does
/// (`--flag value` or `--flag=value`).
fn zmq_args(program: &lex::Word, args: &[lex::Word]) -> Result<(Option<u16>, Kind), ImportError> {
    let mut http = None;
    let mut publish = None;
    let mut subs: Vec<(u16, lex::Word)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let flag = &args[i];
        let Some(name) = flag.text.strip_prefix("--") else {
            return Err(ImportError::at(
                flag,
                format!(
                    "unexpected argument `{}`: the ZeroMQ program takes --http, --pub and --sub",
                    flag.text
                ),
            ));
        };
        let (name, value) = match name.split_once('=') {
            Some((name, value)) => (
                name,
                lex::Word {
                    text: value.to_owned(),
                    line: flag.line,
                    column: flag.column + name.len() + 3,
                },
            ),
            None => {
                i += 1;
                let value = args
                    .get(i)
                    .ok_or_else(|| ImportError::at(flag, format!("{} needs a port", flag.text)))?;
                (name, value.clone())
            }
        };
        i += 1;
        let twice = || {
            ImportError::at(
                flag,
                format!("--{name} given twice (the program would get a list)"),
            )
        };
        match name {
            "http" => {
                if http.replace(port_of(&value, "--http")?).is_some() {
                    return Err(twice());
                }
            }
            "pub" => {
                if publish.replace(port_of(&value, "--pub")?).is_some() {
                    return Err(twice());
                }
            }
            "sub" => {
                let port = port_of(&value, "--sub")?;
                if subs.iter().any(|(p, _)| *p == port) {
                    return Err(ImportError::at(
                        &value,
                        format!("--sub {port} given twice (every message would arrive twice)"),
                    ));
                }
                subs.push((port, value));
            }
            other => {
                return Err(ImportError::at(
                    flag,
                    format!(
                        "unknown flag --{other}: the ZeroMQ program takes --http, --pub and --sub"
                    ),
                ));
            }
        }
    }
    let publish = publish.ok_or_else(|| {
        ImportError::at(
            program,
            "the ZeroMQ program needs --pub (it binds its PUB socket there)",
        )
    })?;
    if let Some((port, word)) = subs.iter().find(|(p, _)| *p == publish) {
        return Err(ImportError::at(
            word,
            format!("--sub {port} is this line's own --pub"),
        ));
    }
    Ok((http, Kind::Zmq { publish, subs }))
}

fn port_of(word: &lex::Word, what: &str) -> Result<u16, ImportError> {
    match word.text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ImportError::at(
            word,
            format!("{what}: `{}` is not a port (1-65535)", word.text),
        )),
    }
}

/// Two lines with one node name, or two listeners on one port: the
/// processes would not start side by side.
fn check_clashes(nodes: &[Node], errors: &mut Vec<ImportError>) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut ports: HashMap<u16, (usize, &'static str)> = HashMap::new();
    for node in nodes {
        if let Some(first) = names.insert(&node.name, node.line) {
            errors.push(ImportError::new(
                node.line,
                1,
                format!("node `{}` again (first on line {first})", node.name),
            ));
        }
        let mut listen = vec![(node.http.unwrap_or(DEFAULT_HTTP), "HTTP")];
        if let Kind::Zmq { publish, .. } = node.kind {
            listen.push((publish, "PUB"));
        }
        for (port, what) in listen {
            if let Some((first, first_what)) = ports.insert(port, (node.line, what)) {
                errors.push(ImportError::new(
                    node.line,
                    1,
                    format!("{what} port {port} is already the {first_what} port of line {first}"),
                ));
            }
        }
    }
}

/// A YAML double-quoted scalar with `$` kept literal (the loader expands
/// `${VAR}`; `$$` is a `$`).
fn quoted(text: &str, literal_dollars: bool) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' if literal_dollars => out.push_str("$$"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render(nodes: &[Node], options: &Options) -> String {
    let by_pub: HashMap<u16, &str> = nodes
        .iter()
        .filter_map(|n| match n.kind {
            Kind::Zmq { publish, .. } => Some((publish, n.name.as_str())),
            _ => None,
        })
        .collect();
    let mut brokers: Vec<&str> = Vec::new();
    for node in nodes {
        if let Kind::Redis { url } = &node.kind
            && !brokers.contains(&url.as_str())
        {
            brokers.push(url);
        }
    }
    let broker_name = |i: usize| match i {
        0 => "main".to_owned(),
        i => format!("redis{}", i + 1),
    };
    let mut out = String::new();
    let _ = writeln!(out, "# yaml-language-server: $schema={}", options.schema);
    let _ = writeln!(
        out,
        "# Written by `topo import` from {} ({} command line{}).",
        options.source,
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "name: {}", options.name);
    if !brokers.is_empty() {
        out.push_str("brokers:\n");
        for (i, url) in brokers.iter().enumerate() {
            let literal = *url != DEFAULT_REDIS;
            let _ = writeln!(
                out,
                "  {}: {{ url: {} }}",
                broker_name(i),
                quoted(url, literal)
            );
        }
    }
    out.push_str("nodes:\n");
    for node in nodes {
        let text: String = node
            .text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let _ = write!(out, "  # {}:{}: {text}", options.source, node.line);
        match node.note {
            Some(note) => {
                let _ = writeln!(out, " -- {note}");
            }
            None => out.push('\n'),
        }
        let _ = writeln!(out, "  {}:", node.name);
        match node.http {
            Some(port) => {
                let _ = writeln!(out, "    http: {port}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "    http: {DEFAULT_HTTP}   # no port on the line: the program's default"
                );
            }
        }
        match &node.kind {
            Kind::Single => {}
            Kind::Redis { url } => {
                let i = brokers
                    .iter()
                    .position(|b| b == url)
                    .expect("collected above");
                let _ = writeln!(
                    out,
                    "    redis: {{ broker: {}, publish: chat_messages }}",
                    broker_name(i)
                );
            }
            Kind::Zmq { publish, subs } => {
                let subs: Vec<String> = subs
                    .iter()
                    .map(|(port, _)| match by_pub.get(port) {
                        Some(name) => (*name).to_owned(),
                        None => quoted(&format!("tcp://127.0.0.1:{port}"), true),
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "    zmq: {{ pub: {publish}, sub: [{}] }}",
                    subs.join(", ")
                );
            }
        }
    }
    out
}

/// A topology name from a file stem: the characters names allow, `-` for
/// the others.
pub fn name_from_stem(stem: &str) -> String {
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "imported".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(bare: Option<Bare>) -> Options {
        Options {
            name: "t".into(),
            source: "in".into(),
            bare,
            schema: "s.json".into(),
        }
    }

    fn error(input: &str, bare: Option<Bare>) -> ImportError {
        import(input, &options(bare)).unwrap_err().remove(0)
    }

    #[test]
    fn zmq_lines_resolve_subs_to_names_and_keep_unknown_ports_as_endpoints() {
        let out = import(
            "node app --http 8080 --pub 5000 --sub 5001 --sub 6000\nnode app --http=8081 --pub=5001 --sub=5000\n",
            &options(None),
        )
        .unwrap();
        assert!(out.contains("  # in:1: node app --http 8080 --pub 5000 --sub 5001 --sub 6000\n  n8080:\n    http: 8080\n    zmq: { pub: 5000, sub: [n8081, \"tcp://127.0.0.1:6000\"] }\n"), "{out}");
        assert!(
            out.contains("  n8081:\n    http: 8081\n    zmq: { pub: 5001, sub: [n8080] }\n"),
            "{out}"
        );
    }

    #[test]
    fn procfile_names_and_redis_urls() {
        let out = import(
            "web1: REDIS_URL=redis://h:1/0 node app 8081\nweb2: node app\n",
            &options(Some(Bare::Redis)),
        )
        .unwrap();
        assert!(out.contains("brokers:\n  main: { url: \"redis://h:1/0\" }\n  redis2: { url: \"${REDIS_URL:-redis://127.0.0.1:6379}\" }\n"), "{out}");
        assert!(
            out.contains(
                "  web1:\n    http: 8081\n    redis: { broker: main, publish: chat_messages }\n"
            ),
            "{out}"
        );
        assert!(out.contains("  web2:\n    http: 8080   # no port"), "{out}");
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = error("node app --http 8080 --pub 5000 --sbu 5001", None);
        assert_eq!((e.line, e.column), (1, 33));
        assert!(e.message.contains("unknown flag --sbu"), "{e}");
        let e = error("\nnode app 8080", None);
        assert_eq!((e.line, e.column), (2, 6));
        assert!(e.message.contains("--bare"), "{e}");
        let e = error("python app.py", None);
        assert!(e.message.contains("expected `node`"), "{e}");
        let e = error("node app --http 80800 --pub 1", None);
        assert_eq!((e.line, e.column), (1, 17));
        let e = error("node app --http 8080", None);
        assert!(e.message.contains("needs --pub"), "{e}");
        let e = error("node app --pub 5000 --sub 5000", None);
        assert!(e.message.contains("own --pub"), "{e}");
        let e = error("PORT=1 node app 8080", Some(Bare::Single));
        assert!(e.message.contains("`PORT`"), "{e}");
        let e = error("node app 8080\nnode app 8080", Some(Bare::Single));
        assert_eq!(e.line, 2);
        let e = error("wait\n", None);
        assert!(e.message.contains("no command line"), "{e}");
    }

    #[test]
    fn stems_become_valid_names() {
        assert_eq!(name_from_stem("my procs"), "my-procs");
        assert_eq!(name_from_stem(""), "imported");
    }
}
