//! `${VAR}` and `${VAR:-default}` in string values, from the environment.

/// Why a string's `${...}` could not be expanded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// The whole string, which has a `${` without its `}`.
    #[error("unterminated `${{` in \"{0}\": write ${{NAME}} or $$ for a literal $")]
    Unterminated(String),
    /// What is between the braces.
    #[error("`${{{0}}}` is not a variable reference: names are letters, digits and `_`")]
    NotAName(String),
    #[error("environment variable {0} is not set (use ${{{0}:-default}} to give a default)")]
    Unset(String),
}

/// Expands every `${NAME}` and `${NAME:-default}` in `text`; `$$` is a literal `$`.
/// An unset variable without a default is an error that names it.
pub fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(InterpolateError::Unterminated(text.to_owned()));
            };
            out.push_str(&expand(&body[..end], env)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(inner: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, InterpolateError> {
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(InterpolateError::NotAName(inner.to_owned()));
    }
    match (env(name), default) {
        (Some(value), _) if !value.is_empty() || default.is_none() => Ok(value),
        (_, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(InterpolateError::Unset(name.to_owned())),
        (Some(value), None) => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("9000".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_values_and_defaults() {
        assert_eq!(interpolate("${PORT}", &env).unwrap(), "9000");
        assert_eq!(interpolate("a${MISSING:-x}b", &env).unwrap(), "axb");
        assert_eq!(interpolate("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(interpolate("${EMPTY}", &env).unwrap(), "");
        assert_eq!(interpolate("$$5 $x", &env).unwrap(), "$5 $x");
    }

    #[test]
    fn names_the_missing_variable() {
        let error = interpolate("redis://${REDIS_HOST}:6379", &env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable REDIS_HOST is not set (use ${REDIS_HOST:-default} to give a default)"
        );
        assert_eq!(
            interpolate("${oops", &env).unwrap_err().to_string(),
            "unterminated `${` in \"${oops\": write ${NAME} or $$ for a literal $"
        );
        assert_eq!(
            interpolate("${1X}", &env).unwrap_err().to_string(),
            "`${1X}` is not a variable reference: names are letters, digits and `_`"
        );
    }
}
