//! Text tables, written once for the plan, `ps`, `history`, `state` and `task list`:
//! left-aligned columns two spaces apart, each as wide as its widest cell measured in
//! terminal columns (`console::measure_text_width`: a wide character counts two, colour
//! codes none — so a coloured status lines up like a plain one), the last column unpadded
//! and no trailing spaces. `console` is already the colour crate; a table crate
//! (comfy-table, tabled) would bring borders and wrapping the output has no use for.

/// The column widths of a set of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    widths: Vec<usize>,
}

/// Width of a cell in terminal columns.
pub fn cell_width(cell: &str) -> usize {
    console::measure_text_width(cell)
}

impl Columns {
    /// Widths that fit every row (rows may be of different lengths).
    pub fn fit<R: AsRef<[C]>, C: AsRef<str>>(rows: impl IntoIterator<Item = R>) -> Self {
        let mut widths: Vec<usize> = Vec::new();
        for row in rows {
            for (i, cell) in row.as_ref().iter().enumerate() {
                let w = cell_width(cell.as_ref());
                match widths.get_mut(i) {
                    Some(x) => *x = (*x).max(w),
                    None => widths.push(w),
                }
            }
        }
        Columns { widths }
    }

    /// The width of column `i`.
    pub fn width(&self, i: usize) -> usize {
        self.widths.get(i).copied().unwrap_or(0)
    }

    /// One row, without a line end: cells padded to their column, two spaces apart, the
    /// trailing spaces trimmed.
    pub fn line<C: AsRef<str>>(&self, cells: &[C]) -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let cell = cell.as_ref();
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = self.width(i).saturating_sub(cell_width(cell)) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.truncate(out.trim_end().len());
        out
    }
}

/// The rows as a table, each line after `indent` and ending in a newline.
pub fn table<R: AsRef<[C]>, C: AsRef<str>>(rows: &[R], indent: &str) -> String {
    let columns = Columns::fit(rows);
    let mut out = String::new();
    for row in rows {
        out.push_str(indent);
        out.push_str(&columns.line(row.as_ref()));
        out.truncate(out.trim_end_matches(' ').len());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_by_terminal_width_with_no_trailing_spaces() {
        let rows = [
            vec!["APP", "FROM", "TO"],
            vec!["web", "v1 → v2", "ok"],
            vec!["日本", "-", ""],
            vec!["\x1b[31mred\x1b[0m", "x", "y"],
        ];
        assert_eq!(
            table(&rows, "  "),
            "  APP   FROM     TO\n  web   v1 → v2  ok\n  日本  -\n  \x1b[31mred\x1b[0m   x        y\n"
        );
        let c = Columns::fit(&rows);
        assert_eq!((c.width(0), c.width(1), c.width(9)), (4, 7, 0));
    }
}
