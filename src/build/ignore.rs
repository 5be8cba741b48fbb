//! `.dockerignore`: which files of the build context are left out of what is sent to the
//! engine, with the Docker CLI's rules (moby's `patternmatcher`): one pattern a line, `#`
//! comments, a leading `!` re-includes, the last matching pattern decides; patterns are Go
//! `filepath.Match` globs (`*`, `?`, `[…]`, `\` escapes) plus `**` for any number of folders,
//! relative to the context root, and a pattern that matches a folder leaves out everything
//! in it. The Dockerfile and `.dockerignore` itself are always sent, as the CLI does.
//!
//! Patterns become regular expressions as moby compiles them; `regex` (already in the
//! dependency tree through other crates) does the matching.

use std::path::Path;

use regex::Regex;

/// The patterns of a context's `.dockerignore` (none when it has none).
#[derive(Debug, Default)]
pub struct Ignore {
    patterns: Vec<(Regex, bool)>,
    /// Whether any pattern re-includes: then a left-out folder is still walked.
    has_exceptions: bool,
}

impl Ignore {
    /// Read `CONTEXT/.dockerignore`; the error names the line that is not a pattern.
    pub fn load(context: &Path) -> Result<Ignore, String> {
        match std::fs::read_to_string(context.join(".dockerignore")) {
            Ok(text) => Ignore::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(e) => Err(format!(".dockerignore cannot be read: {e}")),
        }
    }

    pub fn parse(text: &str) -> Result<Ignore, String> {
        let mut ignore = Ignore::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (pattern, exception) = match line.strip_prefix('!') {
                Some(rest) => (rest.trim(), true),
                None => (line, false),
            };
            let pattern = clean(pattern);
            if pattern.is_empty() {
                continue;
            }
            let regex = compile(&pattern)
                .map_err(|e| format!(".dockerignore line {}: `{line}` is not a pattern: {e}", n + 1))?;
            ignore.has_exceptions |= exception;
            ignore.patterns.push((regex, exception));
        }
        Ok(ignore)
    }

    /// Whether `rel` (a `/`-separated path under the context root) is left out.
    pub fn excludes(&self, rel: &str) -> bool {
        let mut excluded = false;
        for (regex, exception) in &self.patterns {
            // A pattern matching a parent folder matches everything in it.
            let matched = regex.is_match(rel) || parents(rel).any(|p| regex.is_match(p));
            if matched {
                excluded = !exception;
            }
        }
        excluded
    }

    /// Whether a left-out folder must still be walked (a later `!` pattern may take back
    /// something in it).
    pub fn walk_excluded(&self) -> bool {
        self.has_exceptions
    }
}

/// `a/b/c` → `a`, `a/b`.
fn parents(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(move |(i, _)| &rel[..i])
}

/// Go's `filepath.Clean` for the relative patterns of a `.dockerignore`: no leading `/`, no
/// `.` segments, `..` applied.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The regular expression of a pattern, as moby's `patternmatcher` builds it.
fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    let mut out = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    // `**/`: any number of folders, none included.
                    i += 1;
                    out.push_str("(.*/)?");
                } else {
                    out.push_str(".*");
                }
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                // A character class, passed through (`^` negation becomes regex's).
                let mut j = i + 1;
                let mut class = String::from("[");
                if chars.get(j) == Some(&'^') || chars.get(j) == Some(&'!') {
                    class.push('^');
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        class.push_str(&regex::escape(&chars[j + 1].to_string()));
                        j += 2;
                        continue;
                    }
                    class.push(chars[j]);
                    j += 1;
                }
                class.push(']');
                i = j;
                out.push_str(&class);
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push_str(&regex::escape(&chars[i].to_string()));
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out.push('$');
    Regex::new(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_exceptions_and_folders_follow_the_docker_cli() {
        let ignore = Ignore::parse(
            "# comment\n\n/secret.txt\nlogs\n!logs/keep.txt\n**/*.tmp\nnode_modules/\ndocs/?.md\n[ab].bin\n./build/../out\n",
        )
        .unwrap();
        for excluded in [
            "secret.txt",
            "logs",
            "logs/drop.txt",
            "a/b/c.tmp",
            "x.tmp",
            "node_modules/m/i.js",
            "docs/a.md",
            "a.bin",
            "out/x",
        ] {
            assert!(ignore.excludes(excluded), "{excluded} is left out");
        }
        for kept in ["logs/keep.txt", "src/secret.txt", "docs/ab.md", "c.bin", "build/out", "Dockerfile", "tmp"] {
            assert!(!ignore.excludes(kept), "{kept} is sent");
        }
        assert!(ignore.walk_excluded());
        assert!(!Ignore::parse("logs\n").unwrap().walk_excluded());
        assert!(!Ignore::default().excludes("anything"));
    }

    #[test]
    fn a_bad_pattern_names_its_line() {
        let err = Ignore::parse("ok\n[z-a]\n").unwrap_err();
        assert!(err.starts_with(".dockerignore line 2: `[z-a]` is not a pattern"), "{err}");
    }
}
