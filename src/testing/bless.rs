//! `topo test --bless`: writes the current prediction into a file's
//! expectations. Only the section itself changes: it is found in the text
//! (a top-level `expect:` key, or `deliveries:` in a sidecar) and replaced,
//! or appended when there is none, so comments and order elsewhere stay.
//! The result is checked again before it is written: the same topology,
//! and expectations equal to the prediction, or nothing is written.

use super::discover::{has_expect_key, sidecar_of};
use crate::check::{Checked, check_str};
use crate::config::expect::Deliveries;
use crate::diff::Diff;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BlessError {
    #[error(transparent)]
    Read(#[from] crate::config::read::ReadError),
    #[error("{file}: cannot write: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{file}: has an `expect:` section and a sidecar {sidecar}: keep one of them")]
    Both { file: String, sidecar: String },
    #[error(
        "{file}: cannot place the section safely (is the top-level mapping indented or in flow style?); write it by hand"
    )]
    Placement { file: String },
}

impl BlessError {
    /// The file could not be read or written, rather than being unfit
    /// to bless.
    pub fn is_usage(&self) -> bool {
        matches!(self, BlessError::Read(_) | BlessError::Write { .. })
    }
}

/// What blessing one file did.
#[derive(Debug, PartialEq, Eq)]
pub enum Blessed {
    Wrote(PathBuf),
    Unchanged(PathBuf),
}

/// The bytes of a top-level block key's section: its line and every
/// indented line after it, up to the next top-level key. Blank lines and
/// column-1 comments right before the next key are left to that key.
pub fn section(text: &str, key: &str) -> Option<Range<usize>> {
    let mut offset = 0;
    let mut found: Option<(usize, usize)> = None;
    for line in text.split_inclusive('\n') {
        let end = offset + line.len();
        let bare = line.trim_end_matches(['\n', '\r']);
        match found {
            None => {
                let is_key = bare
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with(':'));
                if is_key {
                    found = Some((offset, end));
                }
            }
            Some((start, ref mut last)) => {
                if bare.trim().is_empty() || bare.starts_with('#') {
                    // Pending: belongs to the section only if content follows.
                } else if bare.starts_with([' ', '\t']) {
                    *last = end;
                } else {
                    return Some(start..*last);
                }
            }
        }
        offset = end;
    }
    found.map(|(start, last)| start..last)
}

/// A name as a YAML key: plain when it cannot be read as anything but a string.
fn key(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && !matches!(
            name.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        name.to_owned()
    } else {
        format!("\"{name}\"")
    }
}

/// `deliveries:` and one flow mapping per sender, indented by `indent`.
fn deliveries_block(deliveries: &Deliveries, indent: &str) -> String {
    let mut out = format!("{indent}deliveries:");
    if deliveries.is_empty() {
        out.push_str(" {}\n");
        return out;
    }
    out.push('\n');
    for (from, row) in deliveries {
        let cells: Vec<String> = row
            .iter()
            .map(|(to, n)| format!("{}: {n}", key(to)))
            .collect();
        let row = if cells.is_empty() {
            "{}".to_owned()
        } else {
            format!("{{ {} }}", cells.join(", "))
        };
        out.push_str(&format!("{indent}  {}: {row}\n", key(from)));
    }
    out
}

pub fn inline_section(deliveries: &Deliveries) -> String {
    format!("expect:\n{}", deliveries_block(deliveries, "  "))
}

/// `one_of:` and one flow list per sender (NATS queue groups), indented by
/// `indent`; nothing when no sender reaches a group.
pub fn one_of_block(one_of: &crate::config::expect::OneOfs, indent: &str) -> String {
    if one_of.is_empty() {
        return String::new();
    }
    let mut out = format!("{indent}one_of:\n");
    for (from, groups) in one_of {
        let entries: Vec<String> = groups
            .iter()
            .map(|g| {
                let among: Vec<String> = g.among.iter().map(|m| key(m)).collect();
                format!("{{ among: [{}], count: {} }}", among.join(", "), g.count)
            })
            .collect();
        out.push_str(&format!(
            "{indent}  {}: [{}]\n",
            key(from),
            entries.join(", ")
        ));
    }
    out
}

pub fn sidecar_section(deliveries: &Deliveries) -> String {
    deliveries_block(deliveries, "")
}

/// `text` with the section of `key` replaced by `new` (appended if absent),
/// in the text's own line endings.
pub fn with_section(text: &str, key: &str, new: &str) -> String {
    let new = if text.contains("\r\n") {
        new.replace('\n', "\r\n")
    } else {
        new.to_owned()
    };
    match section(text, key) {
        Some(range) => format!("{}{new}{}", &text[..range.start], &text[range.end..]),
        None if text.is_empty() || text.ends_with('\n') => format!("{text}{new}"),
        None => {
            let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
            format!("{text}{newline}{new}")
        }
    }
}

fn read(path: &Path) -> Result<String, BlessError> {
    let file = path.display().to_string();
    let bytes = crate::config::read::read_topology(path)?;
    String::from_utf8(bytes)
        .map_err(|_| BlessError::Invalid(format!("{file}: the file is not valid UTF-8")))
}

fn check(path: &Path, text: String) -> Checked {
    let stem = path
        .file_stem()
        .map_or("topology".into(), |s| s.to_string_lossy().into_owned());
    let env = |name: &str| std::env::var(name).ok();
    check_str(&path.display().to_string(), &stem, text, &env)
}

fn write(path: &Path, old: &str, new: String) -> Result<Blessed, BlessError> {
    if old == new {
        return Ok(Blessed::Unchanged(path.to_path_buf()));
    }
    std::fs::write(path, new).map_err(|source| BlessError::Write {
        file: path.display().to_string(),
        source,
    })?;
    Ok(Blessed::Wrote(path.to_path_buf()))
}

/// Writes the prediction of `path` into its expectations.
pub fn bless(path: &Path) -> Result<Blessed, BlessError> {
    let file = path.display().to_string();
    let text = read(path)?;
    let sidecar = sidecar_of(path);
    let has_sidecar = super::discover::has_sidecar(path);
    if has_sidecar && has_expect_key(&text) {
        return Err(BlessError::Both {
            file,
            sidecar: sidecar.display().to_string(),
        });
    }
    // The file without its expectations: they may be what is wrong (a
    // renamed node) and are about to be replaced.
    let rest = match section(&text, "expect") {
        Some(range) => format!("{}{}", &text[..range.start], &text[range.end..]),
        None => text.clone(),
    };
    let before = check(path, rest);
    let Some(valid) = &before.valid else {
        let shown = check(path, text.clone());
        return Err(BlessError::Invalid(shown.render().trim_end().to_owned()));
    };
    let prediction = valid.analysis.deliveries_by_name(&valid.topology);
    let one_of = valid.analysis.one_of_by_name(&valid.topology);
    if has_sidecar {
        let old = read(&sidecar)?;
        let new = with_section(&old, "deliveries", &sidecar_section(&prediction));
        let new = with_section(&new, "one_of", &one_of_block(&one_of, ""));
        let placed = super::load_sidecar_text(&sidecar, &new, valid)
            .is_ok_and(|e| e.deliveries == prediction && e.one_of == one_of);
        if !placed {
            return Err(BlessError::Placement {
                file: sidecar.display().to_string(),
            });
        }
        return write(&sidecar, &old, new);
    }
    let section = inline_section(&prediction) + &one_of_block(&one_of, "  ");
    let new = with_section(&text, "expect", &section);
    let after = check(path, new.clone());
    let placed = after.valid.as_ref().is_some_and(|v| {
        Diff::between(&valid.topology, &v.topology).is_empty()
            && after
                .expect
                .as_ref()
                .is_some_and(|e| e.deliveries == prediction && e.one_of == one_of)
    });
    if !placed {
        return Err(BlessError::Placement { file });
    }
    write(path, &text, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliveries(rows: &[(&str, &[(&str, u64)])]) -> Deliveries {
        rows.iter()
            .map(|(from, row)| {
                let row = row.iter().map(|(to, n)| (to.to_string(), *n)).collect();
                (from.to_string(), row)
            })
            .collect()
    }

    #[test]
    fn the_section_ends_before_the_next_key_and_its_comments() {
        let text = "nodes:\n  a: {}\nexpect:\n  deliveries:\n\n    a: { a: 1 }\n\n# about limits\nlimits: {}\n";
        let range = section(text, "expect").unwrap();
        assert_eq!(&text[range], "expect:\n  deliveries:\n\n    a: { a: 1 }\n");
        assert_eq!(section(text, "expectations"), None);
        assert_eq!(&text[section(text, "limits").unwrap()], "limits: {}\n");
    }

    #[test]
    fn replacing_keeps_everything_else_byte_for_byte() {
        let text = "# head\nexpect: { deliveries: { a: { a: 9 } } } # old\n# tail comment\nnodes:\n  a: { http: 1 }  # mine\n";
        let new = with_section(
            text,
            "expect",
            &inline_section(&deliveries(&[("a", &[("a", 1)])])),
        );
        assert_eq!(
            new,
            "# head\nexpect:\n  deliveries:\n    a: { a: 1 }\n# tail comment\nnodes:\n  a: { http: 1 }  # mine\n"
        );
    }

    #[test]
    fn appends_when_absent_in_the_files_line_endings() {
        let text = "nodes:\r\n  a: {}";
        let new = with_section(text, "expect", &inline_section(&deliveries(&[("a", &[])])));
        assert_eq!(
            new,
            "nodes:\r\n  a: {}\r\nexpect:\r\n  deliveries:\r\n    a: {}\r\n"
        );
    }

    #[test]
    fn names_that_yaml_would_read_otherwise_are_quoted() {
        let block = sidecar_section(&deliveries(&[("1", &[("true", 1), ("b-2", 2)])]));
        assert_eq!(block, "deliveries:\n  \"1\": { b-2: 2, \"true\": 1 }\n");
        assert_eq!(sidecar_section(&Deliveries::new()), "deliveries: {}\n");
        let one_of: crate::config::expect::OneOfs = [(
            "shop".to_owned(),
            vec![crate::config::expect::OneOf {
                among: vec!["b".into(), "true".into()],
                count: 2,
            }],
        )]
        .into();
        assert_eq!(
            one_of_block(&one_of, "  "),
            "  one_of:\n    shop: [{ among: [b, \"true\"], count: 2 }]\n"
        );
        assert_eq!(one_of_block(&Default::default(), ""), "");
    }
}
