//! Control characters made visible in human output. A value from a stage file (an env
//! value, a command argument), a live service or a runtime's answer may hold an escape
//! sequence or a carriage return that, printed raw, would rewrite what a reviewer's terminal
//! shows (erase the command diff above it, say). Such characters are written as Rust
//! escapes (`\u{1b}`, `\r`, `\t`). JSON output needs none of this: serde escapes them.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as is: C0 and C1 controls and DEL (`char::is_control`),
/// and the bidirectional overrides and isolates, which reorder what is shown.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` with every control character escaped except line breaks: a multi-line text (a
/// rendering of several entries, an error with its hint) keeps its lines.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// `s` as one line: control characters escaped, line breaks too (a value that must not
/// start a line of its own, which could pass for a line of the diff).
pub fn escape_line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(escape_controls("plain text, ünïcode\nsecond line"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\x1b[2Jb\rc\td\nz"), "a\\u{1b}[2Jb\\rc\\td\nz");
        assert_eq!(escape_line("one\ntwo\x07"), "one\\ntwo\\u{7}");
        assert_eq!(escape_line("\u{9b}\u{7f}x\u{202e}y"), "\\u{9b}\\u{7f}x\\u{202e}y");
    }
}
