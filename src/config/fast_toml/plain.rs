//! A reader of plain TOML: the strict subset of TOML 1.0 that stage files are written in,
//! read in one pass over the bytes, into a tree of borrowed keys and strings that serde
//! deserializes from directly.
//!
//! Why: the `toml` crate first lists every token and every parse event of a file, then
//! builds a spanned table, then deserializes; for the large stage files `ferry plan` reads on
//! every run, that was most of its time. This reader takes less than half the instructions
//! (80 M against 182 M for the 1.9 MB stage file of the plan benchmark, deserializing included).
//!
//! It never decides anything the `toml` crate would decide differently: what it reads, it
//! reads exactly as TOML 1.0 does, and everything else it declines (`None`), and the caller
//! then reads the file with the `toml` crate (and, for a file with problems, with the reader
//! that reports them). Declined: multi-line strings, floats, date-times, integers other than
//! plain decimals, dotted keys, keys with escapes, inline tables spread over several lines,
//! nesting or headers more than 64 deep — and every syntax or table-definition error, which the full readers report with their
//! location. `tests` pin it equal to the `toml` crate, and `fuzz/fuzz_targets/toml_plain.rs`
//! compares the two on arbitrary input.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::de::value::{Error, MapDeserializer, SeqDeserializer};
use serde::de::{Deserialize, Deserializer, IntoDeserializer, Visitor};

/// Deserialize `text` if it is plain TOML; `None` when it is not, or does not fit `T`.
pub fn from_str<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    from_table(parse(text)?)
}

/// Deserialize a parsed table; `None` when it does not fit `T`.
pub fn from_table<'a, T: Deserialize<'a>>(table: Table<'a>) -> Option<T> {
    T::deserialize(Node::Table(table)).ok()
}

/// The root table of `text` if it is plain TOML; `None` otherwise.
pub fn parse(text: &str) -> Option<Table<'_>> {
    Reader { text, bytes: text.as_bytes(), at: 0, depth: 0 }.document()
}

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    /// A string, borrowed from the text unless it had escapes.
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    /// An array value, `[…]`.
    Array(Vec<Node<'a>>),
    Table(Table<'a>),
    /// An array of tables, `[[…]]`.
    Tables(Vec<Table<'a>>),
}

/// How a table came to be, which decides what may still add to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Only named on the way to another table (`apps` in `[apps.web]`): a header may still
    /// define it, once.
    Implicit,
    /// Defined by its header (or the root).
    Header,
    /// An inline table, `{ … }`: complete as written.
    Inline,
}

/// A table: its entries in file order.
#[derive(Debug, Clone)]
pub struct Table<'a> {
    entries: Vec<(&'a str, Node<'a>)>,
    /// Entry positions by key, kept once a table is large (the `apps` of a big stage), so
    /// finding a key and refusing a duplicate stay cheap.
    index: Option<HashMap<&'a str, usize, BuildHasherDefault<FnvHasher>>>,
    origin: Origin,
}

impl PartialEq for Table<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

/// From this many entries on, a table keeps an index.
const INDEXED_FROM: usize = 32;

impl<'a> Table<'a> {
    fn new(origin: Origin) -> Self {
        Table { entries: Vec::new(), index: None, origin }
    }

    /// The keys, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.entries.iter().map(|(k, _)| *k)
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| *k == key),
        }
    }

    /// Add `key`; `None` if it is there already (a duplicate key is an error in TOML).
    fn insert(&mut self, key: &'a str, node: Node<'a>) -> Option<usize> {
        if self.position(key).is_some() {
            return None;
        }
        let at = self.entries.len();
        self.entries.push((key, node));
        match &mut self.index {
            Some(index) => {
                index.insert(key, at);
            }
            None if self.entries.len() >= INDEXED_FROM => {
                self.index = Some(self.entries.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect());
            }
            None => {}
        }
        Some(at)
    }
}

/// FNV-1a: keys are short, and std's SipHash would cost more than the lookups it serves.
#[derive(Default)]
struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// How many arrays and inline tables the reader is inside.
    depth: usize,
}

/// Values nested deeper than this are declined, and headers of more keys: each level of a
/// value is a frame of recursion, and a large stage file is read on threads with small
/// stacks; the `toml` crate refuses either from about a hundred levels. Stage files nest
/// three deep.
const MAX_DEPTH: usize = 64;

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.at += 1)
    }

    /// Spaces and tabs: TOML's whitespace.
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// A comment from its `#` up to (not including) the line's end. TOML allows neither
    /// control characters (but tab) nor a lone carriage return in a comment.
    fn comment(&mut self) -> Option<()> {
        self.eat(b'#')?;
        while let Some(b) = self.peek() {
            match b {
                b'\n' => break,
                b'\r' => return (self.bytes.get(self.at + 1) == Some(&b'\n')).then_some(()),
                b'\t' => {}
                0..=0x1f | 0x7f => return None,
                _ => {}
            }
            self.at += 1;
        }
        Some(())
    }

    /// The end of a line: blanks, maybe a comment, then a newline or the end of the text.
    fn line_end(&mut self) -> Option<()> {
        self.skip_blanks();
        if self.peek() == Some(b'#') {
            self.comment()?;
        }
        match self.peek() {
            None => Some(()),
            Some(b'\n') => {
                self.at += 1;
                Some(())
            }
            Some(b'\r') => {
                self.at += 1;
                self.eat(b'\n')
            }
            Some(_) => None,
        }
    }

    /// Blanks, newlines and comments, as allowed between the values of an array.
    fn skip_array_space(&mut self) -> Option<()> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n') => self.at += 1,
                Some(b'\r') => {
                    self.at += 1;
                    self.eat(b'\n')?;
                }
                Some(b'#') => self.comment()?,
                _ => return Some(()),
            }
        }
    }

    fn document(mut self) -> Option<Table<'a>> {
        let mut root = Table::new(Origin::Header);
        // The table key/value lines go to: a path of entry positions from the root (into
        // the last element where an entry is an array of tables).
        let mut current: Vec<usize> = Vec::new();
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Some(root),
                Some(b'\n' | b'\r' | b'#') => self.line_end()?,
                Some(b'[') => {
                    current = self.header(&mut root)?;
                    self.line_end()?;
                }
                Some(_) => {
                    let key = self.key()?;
                    self.skip_blanks();
                    self.eat(b'=')?;
                    self.skip_blanks();
                    let value = self.value()?;
                    self.line_end()?;
                    table_at(&mut root, &current)?.insert(key, value)?;
                }
            }
        }
    }

    /// A `[a.b]` or `[[a.b]]` header: finds or makes its table and returns its path.
    fn header(&mut self, root: &mut Table<'a>) -> Option<Vec<usize>> {
        self.eat(b'[')?;
        let array = self.eat(b'[').is_some();
        let mut keys = vec![self.header_key()?];
        while self.eat(b'.').is_some() {
            // The `toml` crate refuses headers of about a hundred keys: decline well before.
            if keys.len() == MAX_DEPTH {
                return None;
            }
            keys.push(self.header_key()?);
        }
        self.eat(b']')?;
        if array {
            self.eat(b']')?;
        }
        let (last, parents) = keys.split_last()?;
        let mut path = Vec::with_capacity(keys.len());
        let mut table = root;
        for key in parents {
            let at = match table.position(key) {
                Some(at) => at,
                None => table.insert(key, Node::Table(Table::new(Origin::Implicit)))?,
            };
            path.push(at);
            table = match &mut table.entries[at].1 {
                Node::Table(t) if t.origin != Origin::Inline => t,
                Node::Tables(ts) => ts.last_mut()?,
                _ => return None,
            };
        }
        let at = match (table.position(last), array) {
            (None, false) => table.insert(last, Node::Table(Table::new(Origin::Header)))?,
            (None, true) => table.insert(last, Node::Tables(vec![Table::new(Origin::Header)]))?,
            (Some(at), false) => match &mut table.entries[at].1 {
                Node::Table(t) if t.origin == Origin::Implicit => {
                    t.origin = Origin::Header;
                    at
                }
                _ => return None,
            },
            (Some(at), true) => match &mut table.entries[at].1 {
                Node::Tables(ts) => {
                    ts.push(Table::new(Origin::Header));
                    at
                }
                _ => return None,
            },
        };
        path.push(at);
        Some(path)
    }

    /// One key of a header, with the blanks TOML allows around it.
    fn header_key(&mut self) -> Option<&'a str> {
        self.skip_blanks();
        let key = self.key()?;
        self.skip_blanks();
        Some(key)
    }

    /// A bare key, or a quoted one without escapes. (A dotted key before `=` is declined
    /// by its caller, which finds a `.` where the `=` should be.)
    fn key(&mut self) -> Option<&'a str> {
        let start = self.at;
        let key = match self.peek()? {
            b'"' => match self.basic_string()? {
                Cow::Borrowed(key) => key,
                Cow::Owned(_) => return None,
            },
            b'\'' => self.literal_string()?,
            _ => {
                while matches!(self.peek(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')) {
                    self.at += 1;
                }
                if self.at == start {
                    return None;
                }
                &self.text[start..self.at]
            }
        };
        Some(key)
    }

    fn value(&mut self) -> Option<Node<'a>> {
        match self.peek()? {
            b'"' => self.basic_string().map(Node::Str),
            b'\'' => self.literal_string().map(|s| Node::Str(Cow::Borrowed(s))),
            b'[' | b'{' if self.depth == MAX_DEPTH => None,
            b'[' => {
                self.depth += 1;
                let array = self.array();
                self.depth -= 1;
                array
            }
            b'{' => {
                self.depth += 1;
                let table = self.inline_table();
                self.depth -= 1;
                table
            }
            b't' => self.word("true").map(|()| Node::Bool(true)),
            b'f' => self.word("false").map(|()| Node::Bool(false)),
            b'-' | b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    /// Whether the value that just ended is followed by something that may follow a value.
    fn at_value_end(&self) -> bool {
        matches!(self.peek(), None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}' | b'#'))
    }

    fn word(&mut self, word: &str) -> Option<()> {
        self.bytes[self.at..].starts_with(word.as_bytes()).then(|| self.at += word.len())?;
        self.at_value_end().then_some(())
    }

    /// A decimal integer: `0`, or digits not starting with 0, maybe after a `-`. Other
    /// forms TOML allows (`+1`, `1_000`, `0x1f`) are declined, as are floats and dates.
    fn integer(&mut self) -> Option<Node<'a>> {
        let start = self.at;
        self.eat(b'-');
        let digits = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        let n = self.at - digits;
        if n == 0 || (n > 1 && self.bytes[digits] == b'0') || !self.at_value_end() {
            return None;
        }
        self.text[start..self.at].parse().ok().map(Node::Int)
    }

    /// `"…"` on one line; borrowed unless it has escapes. A multi-line string is declined.
    fn basic_string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        if self.peek() == Some(b'"') && self.bytes.get(self.at + 1) == Some(&b'"') {
            return None;
        }
        let start = self.at;
        self.skip_plain_string_bytes();
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(Cow::Borrowed(&self.text[start..self.at - 1]));
                }
                b'\\' => break,
                b'\t' => {}
                0..=0x1f | 0x7f => return None,
                _ => {}
            }
            self.at += 1;
        }
        let mut decoded = String::from(&self.text[start..self.at]);
        loop {
            let from = self.at;
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(Cow::Owned(decoded));
                }
                b'\\' => {
                    let escape = *self.bytes.get(self.at + 1)?;
                    self.at += 2;
                    let c = match escape {
                        b'b' => '\u{8}',
                        b't' => '\t',
                        b'n' => '\n',
                        b'f' => '\u{c}',
                        b'r' => '\r',
                        b'"' => '"',
                        b'\\' => '\\',
                        b'u' => self.unicode_escape(4)?,
                        b'U' => self.unicode_escape(8)?,
                        _ => return None,
                    };
                    decoded.push(c);
                }
                b'\t' => {
                    self.at += 1;
                    decoded.push('\t');
                }
                0..=0x1f | 0x7f => return None,
                _ => {
                    // Copy the run up to the next quote, backslash or control character.
                    while let Some(b) = self.peek() {
                        if b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f {
                            break;
                        }
                        self.at += 1;
                    }
                    decoded.push_str(&self.text[from..self.at]);
                }
            }
        }
    }

    /// Skip the bytes of a basic string that need no look of their own, eight at a time:
    /// stops at the first word holding a quote, a backslash or a control character (tab
    /// included), for the caller's byte-by-byte loop. Strings are most of a stage file.
    fn skip_plain_string_bytes(&mut self) {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        // Whether a byte of `w` is below `n` (`n` ≤ 0x80), or zero.
        let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
        let has = |w: u64, b: u8| below(w ^ (ONES * u64::from(b)), 1);
        while let Some(chunk) = self.bytes.get(self.at..self.at + 8) {
            let w = u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
            if (below(w, 0x20) | has(w, b'"') | has(w, b'\\') | has(w, 0x7f)) != 0 {
                return;
            }
            self.at += 8;
        }
    }

    /// The `XXXX` of `\uXXXX` (`digits` 4) or `\UXXXXXXXX` (8), `self.at` on the first
    /// digit: a Unicode scalar value (not a surrogate), leaving `self.at` after the digits.
    fn unicode_escape(&mut self, digits: usize) -> Option<char> {
        let hex = self.text.get(self.at..self.at + digits)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
        self.at += digits;
        Some(c)
    }

    /// `'…'` on one line. A multi-line literal string is declined.
    fn literal_string(&mut self) -> Option<&'a str> {
        self.eat(b'\'')?;
        if self.peek() == Some(b'\'') && self.bytes.get(self.at + 1) == Some(&b'\'') {
            return None;
        }
        let start = self.at;
        loop {
            match self.peek()? {
                b'\'' => {
                    self.at += 1;
                    return Some(&self.text[start..self.at - 1]);
                }
                b'\t' => {}
                0..=0x1f | 0x7f => return None,
                _ => {}
            }
            self.at += 1;
        }
    }

    fn array(&mut self) -> Option<Node<'a>> {
        self.eat(b'[')?;
        let mut items = Vec::new();
        loop {
            self.skip_array_space()?;
            if self.eat(b']').is_some() {
                return Some(Node::Array(items));
            }
            items.push(self.value()?);
            self.skip_array_space()?;
            if self.eat(b',').is_none() {
                self.eat(b']')?;
                return Some(Node::Array(items));
            }
        }
    }

    /// `{ k = v, … }` on one line, without a trailing comma (as TOML 1.0 has it).
    fn inline_table(&mut self) -> Option<Node<'a>> {
        let start = self.at;
        self.eat(b'{')?;
        let mut table = Table::new(Origin::Inline);
        self.skip_blanks();
        if self.eat(b'}').is_none() {
            loop {
                let key = self.key()?;
                self.skip_blanks();
                self.eat(b'=')?;
                self.skip_blanks();
                let value = self.value()?;
                table.insert(key, value)?;
                self.skip_blanks();
                if self.eat(b',').is_none() {
                    self.eat(b'}')?;
                    break;
                }
                self.skip_blanks();
            }
        }
        // Newlines inside (within an array value) are TOML 1.0, but rare; the `toml` crate
        // reads them as TOML 1.1 would, so such a table is left to the full readers.
        (!self.bytes[start..self.at].contains(&b'\n')).then_some(Node::Table(table))
    }
}

/// The table at `path` (see [`Reader::document`]).
fn table_at<'t, 'a>(root: &'t mut Table<'a>, path: &[usize]) -> Option<&'t mut Table<'a>> {
    let mut table = root;
    for &at in path {
        table = match &mut table.entries.get_mut(at)?.1 {
            Node::Table(t) => t,
            Node::Tables(ts) => ts.last_mut()?,
            _ => return None,
        };
    }
    Some(table)
}

impl<'de> IntoDeserializer<'de, Error> for Node<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> IntoDeserializer<'de, Error> for Table<'de> {
    type Deserializer = Node<'de>;
    fn into_deserializer(self) -> Node<'de> {
        Node::Table(self)
    }
}

impl<'de> Deserializer<'de> for Node<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Str(Cow::Borrowed(s)) => visitor.visit_borrowed_str(s),
            Node::Str(Cow::Owned(s)) => visitor.visit_string(s),
            Node::Int(i) => visitor.visit_i64(i),
            Node::Bool(b) => visitor.visit_bool(b),
            Node::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Node::Tables(tables) => {
                let mut seq = SeqDeserializer::new(tables.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Node::Table(table) => {
                let mut map = MapDeserializer::new(table.entries.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    /// A value that is present is `Some`; absent fields are serde's business.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    /// Only a string names an enum's variant: the `toml` crate would also take a table, and
    /// the full reader refuses that, so declining it keeps the three in step.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::Str(Cow::Borrowed(s)) => visitor.visit_enum(s.into_deserializer()),
            Node::Str(Cow::Owned(s)) => visitor.visit_enum(s.into_deserializer()),
            _ => Err(serde::de::Error::custom("an enum variant is a string")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// What the `toml` crate reads from `text`, as JSON.
    fn by_toml(text: &str) -> Option<Value> {
        toml::from_str::<Value>(text).ok()
    }

    /// What this reader reads from `text`, as JSON.
    fn by_plain(text: &str) -> Option<Value> {
        from_str::<Value>(text)
    }

    #[test]
    fn reads_plain_toml_as_the_toml_crate_does() {
        for text in [
            "",
            "\n\n# only a comment\n",
            "a = 1\nb = -0\nc = -42\nd = 9223372036854775807\ne = -9223372036854775808\n",
            "t = true\nf = false\n",
            "s = \"plain\"\nl = 'C:\\path'\ne = \"\"\nel = ''\n",
            "esc = \"tab\\there \\\"q\\\" back\\\\slash \\u00e9 \\U0001F600 \\b\\f\\n\\r end\"\n",
            "utf8 = \"zoë ☃\" # comment with ünïcode\n",
            "arr = [ 1, 2 ,3, ]\nnested = [[1], [\"a\", 'b'], []]\nmixed = [1, \"x\", true]\n",
            "multi = [\n  \"a\", # one\n  # between\n  \"b\",\n]\n",
            "inline = { a = 1, \"b c\" = 'x', d = { e = [1, 2] } }\nempty = {}\n",
            "[a]\nx = 1\n[a.b]\ny = 2\n[c . d]\nz = 3\n[ 'quoted key' ]\n\"k\" = 1\n",
            "[x.y.z]\nv = 1\n[x]\nw = 2\n[x.y]\nu = 3\n",
            "[[t]]\nn = 1\n[[t]]\nn = 2\n[t.sub]\nm = 3\n[[t.list]]\nk = 1\n",
            "[apps.web]\r\nimage = \"web\"\r\n[apps.web.releases]\r\n1 = \"sha256:x\"\r\n",
            "key = \"value\"\t# tabbed comment\t\n[table]\t\n",
            "a=1\nb=\"2\"\n[t]\nc={x=1}\n",
            "1 = 'one'\n-2- = 'dash'\n_ = 3\n",
        ] {
            let plain = by_plain(text);
            assert!(plain.is_some(), "plain TOML is read:\n{text}");
            assert_eq!(plain, by_toml(text), "{text}");
        }
    }

    #[test]
    fn declines_invalid_toml() {
        for text in [
            "a = 1\na = 2\n",
            "[t]\n[t]\n",
            "[t]\nx = 1\n[t.x]\n",
            "t = {}\n[t]\n",
            "t = { a = 1 }\n[t.b]\n",
            "[[t]]\n[t]\n",
            "[t]\n[[t]]\n",
            "a = [1]\n[[a]]\n",
            "[a.b]\n[a]\nb = 1\n",
            "a = { x = 1, x = 2 }\n",
            "a = 1 b = 2\n",
            "a = \"unterminated\n",
            "a = 'unterminated\n",
            "a = \"bad \\q escape\"\n",
            "a = \"\\uD800\"\n",
            "a = \"\\u12\"\n",
            "a = \"control \u{1} char\"\n",
            "a = 'control \u{7f} char'\n",
            "a = 1 # control \u{1} in a comment\n",
            "a = 1\r",
            "a = 1\rb = 2\n",
            "a = 01\n",
            "a = -\n",
            "a = truer\n",
            "a = [1,,2]\n",
            "a = [,]\n",
            "a =\n",
            "= 1\n",
            "[a\n",
            "[a]]\n",
            "[[a]\n",
            "[[a] ]\n",
            "[]\n",
            "[a] b = 1\n",
            "a b = 1\n",
            "a = 99999999999999999999\n",
        ] {
            assert_eq!(by_toml(text), None, "the toml crate refuses it:\n{text}");
            assert_eq!(by_plain(text), None, "{text}");
        }
    }

    #[test]
    fn declines_toml_outside_its_subset() {
        for text in [
            "a = \"\"\"\nmulti\n\"\"\"\n",
            "a = '''\nmulti\n'''\n",
            "a = 1.5\n",
            "a = 1e3\n",
            "a = inf\n",
            "a = +1\n",
            "a = 1_000\n",
            "a = 0x1f\n",
            "a = 1979-05-27\n",
            "a = 1979-05-27T07:32:00Z\n",
            "a.b = 1\n",
            "[t]\na . b = 1\n",
            "a = { b.c = 1 }\n",
            "\"esc\\u0041ped\" = 1\n",
            "a = { b = [\n1] }\n",
            // TOML 1.1, which the `toml` crate reads and the full reader (TOML 1.0) refuses.
            "a = { x = 1, }\n",
        ] {
            assert!(by_toml(text).is_some(), "valid TOML:\n{text}");
            assert_eq!(by_plain(text), None, "{text}");
        }
    }

    #[test]
    fn declines_values_nested_and_headers_deeper_than_the_toml_crate_reads() {
        let nested = |depth: usize| format!("a = {}1{}\n", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(by_plain(&nested(MAX_DEPTH)), by_toml(&nested(MAX_DEPTH)));
        assert!(by_plain(&nested(MAX_DEPTH)).is_some());
        // On a thread with a 64 KiB stack, as deep as a fuzzer or an attacker likes.
        let deep = nested(200_000);
        let declined = std::thread::Builder::new().stack_size(64 << 10).spawn(move || by_plain(&deep)).unwrap();
        assert_eq!(declined.join().unwrap(), None);
        let header = |keys: usize| format!("[{}]\n", vec!["k"; keys].join("."));
        assert_eq!(by_plain(&header(MAX_DEPTH)), by_toml(&header(MAX_DEPTH)));
        assert!(by_plain(&header(MAX_DEPTH)).is_some());
        assert_eq!(by_plain(&header(MAX_DEPTH + 1)), None);
        assert_eq!(by_toml(&header(100)), None, "the toml crate's limit, which the reader stays below");
        let inline = |depth: usize| format!("a = {}1{}\n", "{ b = ".repeat(depth), " }".repeat(depth));
        assert_eq!(by_plain(&inline(MAX_DEPTH)), by_toml(&inline(MAX_DEPTH)));
        assert!(by_plain(&inline(MAX_DEPTH)).is_some());
        assert_eq!(by_plain(&inline(MAX_DEPTH + 1)), None);
    }

    #[test]
    fn large_tables_find_and_refuse_keys_through_their_index() {
        let mut text: String = (0..100).map(|i| format!("[apps.a{i}]\nimage = \"{i}\"\n")).collect();
        text.push_str("[apps.a50.env]\nX = \"1\"\n");
        let read = by_plain(&text).unwrap();
        assert_eq!(read, by_toml(&text).unwrap());
        assert_eq!(read["apps"]["a50"]["env"]["X"], "1");
        text.push_str("[apps.a7]\n");
        assert_eq!(by_plain(&text), None, "a table defined twice");
    }

    /// Pieces of TOML that combine into valid and invalid documents alike.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "a",
            "b",
            "apps",
            "1",
            "-",
            "_",
            "\"q\"",
            "'l'",
            "\"\\u00e9\"",
            "\"\\t\"",
            "\"\\x\"",
            "=",
            " = ",
            ".",
            " ",
            "\t",
            "\n",
            "\r\n",
            "\r",
            "#",
            "# c\n",
            "[",
            "]",
            "[[",
            "]]",
            "{",
            "}",
            ",",
            "1",
            "0",
            "-1",
            "01",
            "1.5",
            "true",
            "false",
            "\"",
            "'",
            "\"\"\"",
            "\\",
            "\u{1}",
            "é",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// Whatever this reader reads, the `toml` crate reads the same.
        #[test]
        fn never_reads_anything_differently(pieces in prop::collection::vec(piece(), 0..24)) {
            let text = pieces.concat();
            if let Some(plain) = by_plain(&text) {
                prop_assert_eq!(Some(plain), by_toml(&text), "{:?}", text);
            }
        }

        /// Structured documents, most of them valid: read the same, or declined.
        #[test]
        fn reads_structured_documents_as_the_toml_crate_does(
            lines in prop::collection::vec(
                (prop::sample::select(vec!["[t]", "[t.u]", "[[v]]", "[v.w]", "[apps.a]", "[apps.a.env]", "x = 1",
                    "y = \"s\"", "x = [1, 'a']", "z = { p = 1 }", "q = true", "# c", "", "[u]", "w = -3"]),
                 prop::sample::select(vec!["\n", "\r\n", " \n", "\t# x\n"])),
                0..16,
            )
        ) {
            let text: String = lines.iter().map(|(line, end)| format!("{line}{end}")).collect();
            let plain = by_plain(&text);
            if plain.is_some() {
                prop_assert_eq!(plain, by_toml(&text), "{:?}", text);
            } else if text.lines().all(|l| !l.contains('\r')) {
                // Everything above is within the subset: declined only when invalid.
                prop_assert_eq!(by_toml(&text), None, "{:?}", text);
            }
        }
    }
}
