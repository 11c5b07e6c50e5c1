//! How commands print: a readable table or text on a terminal, JSON with `--json`; errors as
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
