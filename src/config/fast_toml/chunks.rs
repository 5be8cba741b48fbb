//! Cutting a large TOML stage file into pieces that parse on their own, so the pieces can be
//! parsed on several cores: the prefix (everything before the first app) and chunks of
//! whole apps, each starting at a line that opens a `[apps.NAME]` table (NAME a bare key, the
//! `[` in the first column).
//!
//! The cuts are found without lexing the file; parsing the pieces checks them. A cut made
//! where the file is not at the top level (a line of a multi-line string or array that
//! happens to read `[apps.x]`) leaves the piece before it unterminated, so that piece fails
//! to parse; by induction from the start of the file, when every piece parses, every cut
//! was at the top level. What the pieces cannot see of each other (an app spread over two
//! chunks, an `apps` key in the prefix) is for the caller to check after parsing them; at
//! any doubt it parses the file whole, so every diagnostic is that of the serial path.

use std::ops::Range;

/// The pieces of a stage file: `prefix` holds what comes before the first app header,
/// `chunks` whole apps, in file order; together they cover the text exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunks {
    pub prefix: Range<usize>,
    pub chunks: Vec<Range<usize>>,
}

/// Cut `text` into its prefix and at most `n` chunks of apps of about equal size; `None`
/// when no line opens an app table.
pub fn app_chunks(text: &str, n: usize) -> Option<Chunks> {
    let first = app_header_at_or_after(text, 0)?;
    let mut chunks = Vec::with_capacity(n);
    let mut begin = first;
    for k in 1..n.max(1) {
        let target = first + (text.len() - first) * k / n;
        match app_header_at_or_after(text, target.max(begin + 1)) {
            Some(cut) => {
                chunks.push(begin..cut);
                begin = cut;
            }
            None => break,
        }
    }
    chunks.push(begin..text.len());
    Some(Chunks { prefix: 0..first, chunks })
}

/// The offset of the first line at or after `from` that opens a `[apps.NAME]` table.
fn app_header_at_or_after(text: &str, from: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut at = from;
    while at < b.len() {
        if (at == 0 || b[at - 1] == b'\n') && is_app_header(&b[at..]) {
            return Some(at);
        }
        at += text.get(at..)?.find("\n[apps.")? + 1;
    }
    None
}

/// Whether `line` begins with `[apps.NAME]`, NAME a bare key (letters, digits, `_`, `-`).
fn is_app_header(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"[apps.") else { return false };
    let name = rest.iter().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-')).count();
    name > 0 && rest.get(name) == Some(&b']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut_lines(text: &str, n: usize) -> Vec<&str> {
        let cut = app_chunks(text, n).unwrap();
        assert_eq!(cut.prefix.start, 0);
        let mut end = cut.prefix.end;
        for chunk in &cut.chunks {
            assert_eq!(chunk.start, end, "the chunks follow each other");
            end = chunk.end;
        }
        assert_eq!(end, text.len(), "the chunks cover the text");
        cut.chunks.iter().map(|c| text[c.clone()].lines().next().unwrap()).collect()
    }

    #[test]
    fn cuts_before_lines_that_open_an_app_table() {
        let text = "[runtime]\nkind = \"local\"\n# [apps.comment]\n[apps.a]\nimage = \"a\"\n[apps.a.env]\nX = \"1\"\n\
                    [[apps.a.release_tasks]]\nname = \"m\"\n [apps.indented]\n[apps.\"quoted\"]\n[apps.b] # b\n\
                    image = \"b\"\r\n[apps.c]\r\nimage = \"c\"\r\n";
        assert_eq!(cut_lines(text, 1), ["[apps.a]"]);
        assert_eq!(cut_lines(text, 9), ["[apps.a]", "[apps.b] # b", "[apps.c]"]);
        assert_eq!(&text[..app_chunks(text, 2).unwrap().prefix.end], "[runtime]\nkind = \"local\"\n# [apps.comment]\n");
    }

    #[test]
    fn cuts_into_chunks_of_about_equal_size() {
        let text: String = (0..100).map(|i| format!("[apps.a{i:02}]\nimage = \"x\"\n")).collect();
        assert_eq!(cut_lines(&text, 4), ["[apps.a00]", "[apps.a25]", "[apps.a50]", "[apps.a75]"]);
        assert_eq!(cut_lines(&text, 1).len(), 1);
    }

    #[test]
    fn without_an_app_there_is_nothing_to_cut() {
        assert_eq!(app_chunks("[runtime]\nkind = \"local\"\n", 2), None);
        assert_eq!(app_chunks("", 2), None);
        assert_eq!(app_chunks("[apps]\n[apps.]\n[apps.x.y]\n", 2), None);
    }
}
