//! Aligned text tables for a terminal: what `mailprobe check`, `probe` and `incidents` print.

/// `headers` over `rows`, each column as wide as its widest cell (counted in characters, so
/// `→` or a non-ASCII name keeps the columns straight), two spaces between columns, no
/// trailing spaces.
pub fn render<R: AsRef<[String]>>(headers: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let start = out.len();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            let pad = w.saturating_sub(cell.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
        let end = out[start..].trim_end().len();
        out.truncate(start + end);
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.as_ref().iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_in_characters_and_lines_end_without_spaces() {
        let rows = [
            ["a".to_string(), "scope target → global".into(), "".into()],
            ["längerer-name".to_string(), "x".into(), "last".into()],
        ];
        assert_eq!(
            render(&["NAME", "EVENT", "MORE"], &rows),
            "NAME           EVENT                  MORE\n\
             a              scope target → global\n\
             längerer-name  x                      last\n"
        );
    }

    #[test]
    fn no_rows_is_the_header_alone() {
        assert_eq!(render::<[String; 2]>(&["A", "B"], &[]), "A  B\n");
    }
}
