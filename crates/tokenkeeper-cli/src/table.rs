//! A small table: aligned plain text for the terminal, or Markdown for BENCHMARKS.md.

use std::fmt::Write as _;

/// Rows of cells under a header. The first column is left-aligned, the others right-aligned.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<I, S>(header: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    fn widths(&self) -> Vec<usize> {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .chain([&self.header])
                    .filter_map(|row| row.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Aligned plain text with a rule under the header.
    pub fn plain(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        let line = |out: &mut String, row: &[String]| {
            let mut text = String::new();
            for (c, width) in widths.iter().enumerate() {
                let cell = row.get(c).map(String::as_str).unwrap_or("");
                let pad = width.saturating_sub(cell.chars().count());
                if c == 0 {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                } else {
                    text.push_str("  ");
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&mut out, &self.header);
        let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        let _ = writeln!(out, "{}", "-".repeat(total));
        for row in &self.rows {
            line(&mut out, row);
        }
        out
    }

    /// A GitHub-flavoured Markdown table.
    pub fn markdown(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        let cells = |row: &[String]| -> String {
            let cells: Vec<String> = (0..widths.len())
                .map(|c| row.get(c).cloned().unwrap_or_default().replace('|', "\\|"))
                .collect();
            format!("| {} |", cells.join(" | "))
        };
        let _ = writeln!(out, "{}", cells(&self.header));
        let rule: Vec<&str> = (0..widths.len())
            .map(|c| if c == 0 { "---" } else { "---:" })
            .collect();
        let _ = writeln!(out, "| {} |", rule.join(" | "));
        for row in &self.rows {
            let _ = writeln!(out, "{}", cells(row));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tables_align() {
        let mut table = Table::new(["", "a", "bbbb"]);
        table.row(["requests", "1", "22"]).row(["ok", "333", "4"]);
        let text = table.plain();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "            a  bbbb");
        assert_eq!(lines[2], "requests    1    22");
        assert_eq!(lines[3], "ok        333     4");
    }

    #[test]
    fn markdown_tables_escape_pipes() {
        let mut table = Table::new(["x", "y"]);
        table.row(["a|b", "1"]);
        let text = table.markdown();
        assert!(text.contains("| a\\|b | 1 |"), "{text}");
        assert!(text.contains("| --- | ---: |"), "{text}");
    }
}
