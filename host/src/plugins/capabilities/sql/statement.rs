//! What a plugin's statement may be, checked before it reaches the server.
//!
//! The plugin's own database role is the boundary (it cannot read what it
//! has no privilege on, whatever it sends); this check only makes the
//! statements that would break the host's transaction or session fail
//! early and legibly: transaction control, role and session changes,
//! LISTEN/NOTIFY, COPY, DO, and more than one statement in a call.
//!
//! The scan understands the lexical structure that can hide a `;` or a
//! keyword: comments (`--`, nested `/* */`), string literals (`'…'` with
//! `''`, `E'…'` with backslash escapes), quoted identifiers and
//! dollar-quoted strings.

const HOST_TRANSACTION: &str =
    "the host owns the call's transaction: it commits when the export returns ok and rolls back otherwise";
const OWN_ROLE: &str = "a plugin's statements run as its own role";
const HOST_SESSION: &str = "the host sets the session a plugin's statements run in";
const SESSION_SETTING: &str = "a session setting outlives the call on a pooled connection (behind a transaction \
                               pooler, on a server connection other calls share): use SET LOCAL, which ends with the call's transaction";

/// `Err(why)` when the host refuses `statement`.
pub fn check(statement: &str) -> Result<(), String> {
    let statements = split(statement)?;
    let [only] = statements.as_slice() else {
        return Err(match statements.len() {
            0 => "an empty statement is refused".into(),
            count => {
                format!("several statements at once are refused: one statement per call (this text holds {count})")
            }
        });
    };
    let words = leading_words(only, 4);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match refusal(&words) {
        Some(why) => Err(format!("`{}` is refused: {why}", words.join(" "))),
        None => Ok(()),
    }
}

/// Why a statement beginning with `words` is refused, if it is.
fn refusal(words: &[&str]) -> Option<&'static str> {
    match words {
        ["BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE", ..] => {
            Some(HOST_TRANSACTION)
        }
        ["PREPARE", ..] => Some("prepared transactions and statements outlive the call"),
        ["SET", rest @ ..] => {
            let (local, rest) = match rest {
                ["LOCAL", rest @ ..] => (true, rest),
                rest => (false, rest),
            };
            match rest {
                ["ROLE", ..] | ["SESSION", "ROLE" | "AUTHORIZATION", ..] => Some(OWN_ROLE),
                ["TRANSACTION", ..] | ["SESSION", "CHARACTERISTICS", ..] => Some(HOST_TRANSACTION),
                _ if !local => Some(SESSION_SETTING),
                _ => None,
            }
        }
        ["RESET" | "DISCARD", ..] => Some(HOST_SESSION),
        ["LISTEN" | "NOTIFY" | "UNLISTEN", ..] => Some("notifications reach beyond the call"),
        ["COPY", ..] => Some("COPY reaches files and programs of the database server"),
        ["DO", ..] => Some("anonymous code blocks are not plugin statements"),
        _ => None,
    }
}

/// The statements of `text`, each trimmed of surrounding whitespace and
/// comments; empty ones (a trailing `;`) are dropped.
pub fn split(text: &str) -> Result<Vec<&str>, String> {
    let bytes = text.as_bytes();
    let mut statements = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at < bytes.len() {
        at = match bytes[at] {
            b'-' if bytes.get(at + 1) == Some(&b'-') => line_end(bytes, at),
            b'/' if bytes.get(at + 1) == Some(&b'*') => comment_end(bytes, at)?,
            b'\'' => quoted_end(bytes, at, b'\'', escapes_backslash(bytes, at))?,
            b'"' => quoted_end(bytes, at, b'"', false)?,
            b'$' => dollar_end(bytes, at)?.unwrap_or(at + 1),
            b';' => {
                statements.push(&text[start..at]);
                start = at + 1;
                at + 1
            }
            _ => at + 1,
        };
    }
    statements.push(&text[start..]);
    Ok(statements.into_iter().map(trim).filter(|statement| !statement.is_empty()).collect())
}

/// Up to `count` leading keywords, upper-cased.
fn leading_words(statement: &str, count: usize) -> Vec<String> {
    statement
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
        .take(count)
        .map(str::to_ascii_uppercase)
        .collect()
}

/// `statement` without leading and trailing whitespace and comments.
fn trim(statement: &str) -> &str {
    let mut rest = statement.trim();
    loop {
        let next = if let Some(comment) = rest.strip_prefix("--") {
            comment.split_once('\n').map_or("", |(_, after)| after)
        } else if rest.starts_with("/*") {
            match comment_end(rest.as_bytes(), 0) {
                Ok(end) => &rest[end..],
                Err(_) => return rest,
            }
        } else {
            return rest;
        };
        rest = next.trim();
    }
}

fn line_end(bytes: &[u8], at: usize) -> usize {
    bytes[at..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |offset| at + offset + 1)
}

/// The end of the (nested) block comment opening at `at`.
fn comment_end(bytes: &[u8], at: usize) -> Result<usize, String> {
    let (mut depth, mut index) = (0usize, at);
    while index + 1 < bytes.len() {
        match (bytes[index], bytes[index + 1]) {
            (b'/', b'*') => {
                depth += 1;
                index += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                index += 2;
                if depth == 0 {
                    return Ok(index);
                }
            }
            _ => index += 1,
        }
    }
    Err("a block comment is not closed".into())
}

/// Whether the string literal opening at `at` is an escape string (`E'…'`).
fn escapes_backslash(bytes: &[u8], at: usize) -> bool {
    at > 0
        && matches!(bytes[at - 1], b'e' | b'E')
        && (at < 2 || !(bytes[at - 2].is_ascii_alphanumeric() || bytes[at - 2] == b'_'))
}

/// The end of the literal or quoted identifier opening at `at`; a doubled
/// quote is part of it.
fn quoted_end(bytes: &[u8], at: usize, quote: u8, backslash: bool) -> Result<usize, String> {
    let mut index = at + 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' if backslash => index += 2,
            b if b == quote && bytes.get(index + 1) == Some(&quote) => index += 2,
            b if b == quote => return Ok(index + 1),
            _ => index += 1,
        }
    }
    Err(if quote == b'"' { "a quoted identifier is not closed" } else { "a string literal is not closed" }.into())
}

/// The end of the dollar-quoted string opening at `at` (`$tag$…$tag$`), or
/// `None` when the `$` opens none (a parameter such as `$1`).
fn dollar_end(bytes: &[u8], at: usize) -> Result<Option<usize>, String> {
    let tag_len = bytes[at + 1..].iter().position(|&b| b == b'$');
    let Some(tag_len) = tag_len else { return Ok(None) };
    let tag = &bytes[at..at + tag_len + 2];
    let valid = tag[1..tag.len() - 1].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && !tag.get(1).is_some_and(u8::is_ascii_digit);
    if !valid {
        return Ok(None);
    }
    let body = at + tag.len();
    match bytes[body..].windows(tag.len()).position(|window| window == tag) {
        Some(offset) => Ok(Some(body + offset + tag.len())),
        None => Err("a dollar-quoted string is not closed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(statement: &str) -> String {
        check(statement).expect_err(statement)
    }

    #[test]
    fn ordinary_statements_pass() {
        for statement in [
            "SELECT id FROM tasks WHERE id = $1",
            "  -- a comment\n  INSERT INTO tasks (title) VALUES ('a; b')",
            "UPDATE tasks SET title = $2 WHERE id = $1;",
            "WITH moved AS (DELETE FROM tasks RETURNING *) SELECT count(*) FROM moved",
            "SELECT 'COMMIT', \"begin\" FROM settings",
            "SELECT $$;COMMIT;$$, $tag$ ; $tag$",
            "SELECT E'it\\'s; fine'",
            "CREATE TABLE notes (body text)",
            "SET LOCAL statement_timeout = 100",
            "select * from t /* nested /* ; */ still comment */",
        ] {
            assert_eq!(check(statement), Ok(()), "{statement}");
        }
    }

    #[test]
    fn transaction_control_is_refused() {
        for statement in [
            "COMMIT",
            "commit;",
            "  /* c */ BEGIN",
            "START TRANSACTION",
            "ROLLBACK",
            "END",
            "ABORT",
            "SAVEPOINT s",
            "RELEASE SAVEPOINT s",
            "PREPARE TRANSACTION 'x'",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        ] {
            assert!(refused(statement).contains("refused"), "{statement}");
        }
    }

    #[test]
    fn role_and_session_changes_are_refused() {
        for statement in [
            "SET ROLE postgres",
            "set local role todo_host",
            "SET SESSION ROLE todo_host",
            "SET SESSION AUTHORIZATION postgres",
            "SET LOCAL SESSION AUTHORIZATION postgres",
            "SET statement_timeout = 0",
            "set search_path to public",
            "SET SESSION work_mem = '1GB'",
            "RESET ROLE",
            "RESET ALL",
            "DISCARD ALL",
        ] {
            assert!(refused(statement).contains("refused"), "{statement}");
        }
    }

    #[test]
    fn notifications_copy_and_do_are_refused() {
        for statement in [
            "LISTEN outbox",
            "NOTIFY outbox",
            "UNLISTEN *",
            "COPY (SELECT 1) TO PROGRAM 'touch /tmp/x'",
            "DO $$BEGIN PERFORM 1; END$$",
        ] {
            assert!(refused(statement).contains("refused"), "{statement}");
        }
    }

    #[test]
    fn more_than_one_statement_is_refused() {
        assert!(refused("SELECT 1; COMMIT").contains("one statement"));
        assert!(refused("SELECT 1; SELECT 2;").contains("holds 2"));
        assert!(refused("-- only a comment").contains("empty"));
        assert_eq!(check("SELECT 1; -- trailing comment"), Ok(()));
    }

    #[test]
    fn unclosed_literals_are_refused() {
        assert!(refused("SELECT 'open").contains("not closed"));
        assert!(refused("SELECT $x$ open").contains("not closed"));
        assert!(refused("SELECT 1 /* open").contains("not closed"));
    }

    #[test]
    fn statements_split_outside_literals_and_comments() {
        let text = "CREATE TABLE a (x text DEFAULT ';'); -- one\nCREATE INDEX ON a (x);\n/* two; */ SELECT $$;$$;";
        assert_eq!(
            split(text).unwrap(),
            ["CREATE TABLE a (x text DEFAULT ';')", "CREATE INDEX ON a (x)", "SELECT $$;$$"]
        );
    }
}
