//! Text output helpers: aligned tables, times, and text safe for a terminal.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

/// Columns of text, each as wide as its widest cell, separated by two spaces.
#[derive(Debug)]
pub(super) struct Table {
    header: Vec<&'static str>,
    show_header: bool,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            show_header: true,
            rows: Vec::new(),
        }
    }

    /// A table of `columns` columns that prints no header line (a list of facts).
    pub(super) fn headless(columns: usize) -> Self {
        Self {
            header: vec![""; columns],
            show_header: false,
            rows: Vec::new(),
        }
    }

    /// Adds a row; its cells are made safe to print (see [`printable`]).
    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|cell| printable(&cell)).collect());
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the header and the rows, each line starting with `indent`.
    pub(super) fn write(&self, out: &mut impl Write, indent: &str) -> io::Result<()> {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        let header = self.show_header.then_some(&header);
        for row in header.into_iter().chain(&self.rows) {
            let mut line = String::from(indent);
            for (i, width_i) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                line.push_str(cell);
                if i + 1 < columns {
                    line.extend(std::iter::repeat_n(' ', width_i - width(cell) + 2));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// `text` with control characters (which could move a terminal's cursor or recolour it)
/// shown escaped. Titles and messages come from other devices, so they are not trusted.
pub(super) fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A JSON value on one line, cut to about `max` characters.
pub(super) fn short_json(value: &Value, max: usize) -> String {
    let text = value.to_string();
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A logged conflict's values, each cut to `max`, the one automerge kept marked `*`.
pub(super) fn logged_values(record: &crate::client::ConflictRecord, max: usize) -> Vec<String> {
    record
        .values
        .iter()
        .map(|v| {
            let mark = if v.winner { "*" } else { "" };
            format!("{mark}{}", short_json(&v.value, max))
        })
        .collect()
}

/// Pretty JSON with a final newline (the API's JSON, for `--json`).
pub(super) fn write_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// `ms` since the epoch as a UTC date and time, `2026-11-22 01:17:29`; `-` for 0.
pub(crate) fn utc(ms: i64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A change timestamp as its author's device recorded it: automerge stores seconds, but
/// some writers store ms; values below 10^11 (the year 5138 in seconds, 1973 in ms) are
/// taken as seconds.
pub(super) fn change_time(time: i64) -> String {
    if time.abs() < 100_000_000_000 {
        utc(time.saturating_mul(1000))
    } else {
        utc(time)
    }
}

/// How long before `now_ms` the moment `ms` was, e.g. `42s ago`; `-` for 0.
pub(super) fn age(now_ms: u64, ms: u64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    let secs = now_ms.saturating_sub(ms) / 1000;
    match secs {
        0 => "just now".to_owned(),
        1..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// The current time in ms since the epoch (0 if the clock is before 1970).
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Year, month, day of the `days`th day after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_escape_control_characters() {
        let mut table = Table::new(&["ID", "TITLE", "SIZE"]);
        table.row(vec!["abc".into(), "Run of show".into(), "1 KiB".into()]);
        table.row(vec!["abcdef".into(), "evil\x1b[2J".into(), "".into()]);
        let mut out = Vec::new();
        table.write(&mut out, "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "ID      TITLE          SIZE\n\
             abc     Run of show    1 KiB\n\
             abcdef  evil\\u{1b}[2J\n"
        );
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "-");
        assert_eq!(utc(1_763_774_249_000), "2025-11-22 01:17:29");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(change_time(1_763_774_249), "2025-11-22 01:17:29");
        assert_eq!(change_time(1_763_774_249_000), "2025-11-22 01:17:29");
    }

    #[test]
    fn ages_are_coarse() {
        assert_eq!(age(10_000, 0), "-");
        assert_eq!(age(10_000, 9_500), "just now");
        assert_eq!(age(100_000, 58_000), "42s ago");
        assert_eq!(age(7_200_000, 1), "1h ago");
        assert_eq!(age(5, 10), "just now");
    }

    #[test]
    fn long_json_is_cut() {
        let value = Value::String("x".repeat(100));
        assert_eq!(short_json(&value, 10).chars().count(), 10);
        assert_eq!(short_json(&Value::Bool(true), 10), "true");
    }
}
