//! How commands print: a readable table or text on a terminal, JSON with `--json`, CSV with
//! `--csv` (listings only); errors as
//! `error[kind]: message` on stderr, or as `{"ok":false,"error":{...}}` on stdout with `--json`.

use serde_json::json;

pub fn error(as_json: bool, kind: &str, class: &str, message: &str) {
    if as_json {
        println!(
            "{}",
            json!({"ok": false, "error": {"kind": kind, "class": class, "message": message}})
        );
    } else {
        eprintln!("error[{kind}]: {message}");
    }
}

/// Prints `rows` under `headers`, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

/// How a listing prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl From<crate::cli::FormatArgs> for Format {
    fn from(f: crate::cli::FormatArgs) -> Self {
        if f.json {
            Format::Json
        } else if f.csv {
            Format::Csv
        } else {
            Format::Table
        }
    }
}

impl Format {
    /// Errors go to stdout as JSON only when the caller asked for JSON.
    pub fn json(self) -> bool {
        self == Format::Json
    }
}

/// Rows with missing values (`None`): `-` in a table, an empty field in CSV.
pub fn table_opt(headers: &[&str], rows: &[Vec<Option<String>>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| c.clone().unwrap_or_else(|| "-".into()))
                .collect()
        })
        .collect();
    table(headers, &rows);
}

/// CSV on stdout: a header row (lower-case names), then the rows.
pub fn csv(headers: &[&str], rows: &[Vec<Option<String>>]) -> std::io::Result<()> {
    let mut w = ::csv::Writer::from_writer(std::io::stdout().lock());
    w.write_record(
        headers
            .iter()
            .map(|h| h.to_ascii_lowercase().replace([' ', '-'], "_")),
    )?;
    for r in rows {
        w.write_record(r.iter().map(|c| c.as_deref().unwrap_or("")))?;
    }
    w.flush()
}
