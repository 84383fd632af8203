//! Go's `strconv.Quote` (`%q` of a string), for error messages that quote a path or name as
//! Go's do. The Python twin is `containers_storage._strconv.go_quote`; both follow the same
//! table of cases.

use std::fmt::Write;

/// Quotes `text` as Go's `strconv.Quote` does: printable characters kept, `"` and `\`
/// escaped, `\a \b \f \n \r \t \v` by name, other control characters as `\xNN`, other
/// unprintable characters as `\uNNNN` / `\UNNNNNNNN`, and each byte of invalid UTF-8 as `\xNN`.
pub fn go_quote(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for chunk in text.utf8_chunks() {
        for ch in chunk.valid().chars() {
            push_char(&mut out, ch);
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
    out
}

fn push_char(out: &mut String, ch: char) {
    let named = match ch {
        '"' => "\\\"",
        '\\' => "\\\\",
        '\u{7}' => "\\a",
        '\u{8}' => "\\b",
        '\u{c}' => "\\f",
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        '\u{b}' => "\\v",
        _ if printable(ch) => {
            out.push(ch);
            return;
        }
        _ => "",
    };
    if !named.is_empty() {
        out.push_str(named);
        return;
    }
    let code = u32::from(ch);
    let _ = match code {
        0..=0x7f => write!(out, "\\x{code:02x}"),
        0x80..=0xffff => write!(out, "\\u{code:04x}"),
        _ => write!(out, "\\U{code:08x}"),
    };
}

/// Unicode's letters, marks, numbers, punctuation, symbols and the ASCII space: what Go's
/// `unicode.IsPrint` and Python's `str.isprintable` keep. Rust's `str::escape_debug` escapes
/// exactly the others, save a combining mark at the start of the string, hence the `a` before.
fn printable(ch: char) -> bool {
    let mut buf = [0u8; 5];
    buf[0] = b'a';
    let len = 1 + ch.encode_utf8(&mut buf[1..]).len();
    match std::str::from_utf8(&buf[..len]) {
        Ok(s) => s.escape_debug().eq(s.chars()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    /// The cases of tests/test_strconv.py, each checked there against Go's CLI.
    const CASES: &[(&[u8], &str)] = &[
        (b"", r#""""#),
        (b"plain/path.txt", r#""plain/path.txt""#),
        (b"a \"q\" \\ b", r#""a \"q\" \\ b""#),
        (
            b"a\x07b\x08c\x0cd\x0be\nf\rg\th",
            r#""a\ab\bc\fd\ve\nf\rg\th""#,
        ),
        (b"\x00\x01\x1b\x7f", r#""\x00\x01\x1b\x7f""#),
        (b"\xff\xfe", r#""\xff\xfe""#),
        (b"ok\xc3", r#""ok\xc3""#),
        (
            "é\u{a0}\u{200b}\u{301}x".as_bytes(),
            "\"é\\u00a0\\u200b\u{301}x\"",
        ),
        ("\u{301}x".as_bytes(), "\"\u{301}x\""),
        ("\u{85}\u{ad}".as_bytes(), r#""\u0085\u00ad""#),
        ("\u{1F600}\u{E0001}".as_bytes(), "\"\u{1F600}\\U000e0001\""),
        ("\u{2028}日本".as_bytes(), "\"\\u2028日本\""),
    ];

    #[test]
    fn quotes_as_go() {
        for (input, want) in CASES {
            assert_eq!(
                go_quote(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
