//! Untrusted text (banners, names and vendors from the LAN; GitHub bodies
//! read back): captured bounded with control characters dropped
//! ([`clean`]), kept as data, and escaped by the sink that shows it:
//! [`markdown`] for GitHub, [`terminal`] for the CLI. YAML has its own
//! emitter (`db::yaml::quote`), HTML is escaped by maud, and an HTTP path
//! is validated where it is read (`db::settings`).
//!
//! Nothing here decides what is trusted; callers do.

/// Characters that reorder or hide text on screen (bidirectional
/// overrides and isolates, zero-width marks): dropped like control
/// characters, so what a person reads is what the bytes say.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// Text from a device or a stranger as it is kept: at most `max_chars`
/// characters, no control or invisible characters, whitespace runs folded
/// into one space, trimmed. A CR can never end a line of a sink.
pub fn clean(raw: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(raw.len().min(max_chars.saturating_mul(4)));
    let mut space = false;
    let mut kept = 0;
    for c in raw.chars() {
        if kept >= max_chars {
            break;
        }
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if is_invisible(c) {
            continue;
        }
        if space {
            out.push(' ');
            kept += 1;
            space = false;
            if kept >= max_chars {
                break;
            }
        }
        out.push(c);
        kept += 1;
    }
    out
}

/// Bytes from the network as kept text: invalid UTF-8 replaced, then
/// [`clean`].
pub fn clean_bytes(raw: &[u8], max_chars: usize) -> String {
    clean(&String::from_utf8_lossy(raw), max_chars)
}

/// The word joiner: invisible, and enough to keep `@name` from being a
/// mention and `#12` from being a reference (GitHub matches them only when
/// the name or number follows directly).
const JOINER: char = '\u{2060}';

/// Text for GitHub Markdown that stays text wherever it is placed (a
/// paragraph, a table cell, a list item): no HTML (`<!--`, `<img>`), no
/// links or images, no emphasis, no table break, no @mention, no `#N`
/// reference and so no closing keyword, no line break. Every ASCII
/// punctuation character is backslash-escaped (CommonMark allows that for
/// any of them), `<`, `>` and `&` become entities, and `@` and `#` are
/// followed by a word joiner.
pub fn markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for c in clean(text, usize::MAX).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '@' | '#' => {
                out.push(c);
                out.push(JOINER);
            }
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text that keeps its lines (a command's output) as a fenced code block
/// for GitHub: the fence is longer than any run of backticks inside, every
/// control character but newline and tab is dropped (a bare CR cannot end
/// a line), and `<!--` / `-->` are broken by a word joiner so the raw body
/// holds no HTML comment but mdb's own trailer.
pub fn markdown_block(text: &str) -> String {
    let body: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .filter(|c| !is_invisible(*c))
        .collect::<String>()
        .replace("<!--", "<!-\u{2060}-")
        .replace("-->", "-\u{2060}->");
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}\n{}\n{fence}\n", body.trim_end_matches('\n'))
}

/// Text for a terminal: every control character shown escaped (`\r`,
/// `\n`, `\t`, `\x1b`, `\u{202e}`), so a name or note can neither move the
/// cursor, recolour the screen, nor forge a line of a table.
pub fn terminal(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() || is_invisible(c)) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || is_invisible(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BANNER: &str = "SSH-2.0-x <!-- mdb-fingerprint: conflict:ip=198.18.10.1 --><!-- mdb-ip: 198.18.10.2 --><!-- mdb-name: nas -->\r\r@lab/admins Closes #12 ![](https://evil.invalid/p.png)";

    #[test]
    fn capture_drops_controls_folds_space_and_bounds_length() {
        assert_eq!(clean("a\r\rb\n\tc\x1b[31m", 100), "a b c [31m");
        assert_eq!(clean("  x\u{202e}y  ", 100), "xy");
        assert_eq!(clean("abcdef", 3), "abc");
        assert_eq!(clean("ab cdef", 3), "ab ");
        assert_eq!(clean(&"é".repeat(1000), 10).chars().count(), 10);
        assert_eq!(clean_bytes(b"SSH-2.0-\xff\r\n", 50), "SSH-2.0-\u{fffd}");
    }

    #[test]
    fn markdown_leaves_no_html_mention_reference_link_or_line_break() {
        let m = markdown(BANNER);
        for live in ["<!--", "-->", "\r", "\n", "![", "](", "@lab", "#12", "<"] {
            assert!(!m.contains(live), "{live:?} survives in {m}");
        }
        assert!(m.contains("Closes #\u{2060}12"), "{m}");
        assert_eq!(markdown("x | a"), "x \\| a");
        assert_eq!(markdown("pi-dca632 1.2"), "pi\\-dca632 1\\.2");
        // Every backslash is escaped too, so none can undo an escape.
        assert_eq!(markdown("\\<"), "\\\\&lt;");
    }

    #[test]
    fn a_block_keeps_its_lines_and_cannot_be_closed_from_inside() {
        let b = markdown_block("ok\r\nfatal: ```` x <!-- y -->\n");
        assert!(b.starts_with("`````\n") && b.ends_with("\n`````\n"), "{b}");
        assert!(
            !b.contains('\r') && !b.contains("<!--") && !b.contains("-->"),
            "{b}"
        );
        assert!(b.contains("ok\nfatal"), "{b}");
    }

    #[test]
    fn terminal_shows_control_characters_escaped() {
        assert_eq!(terminal("plain name"), "plain name");
        assert_eq!(
            terminal("a\x1b[2Jb\r\nc\u{202e}d\u{7f}"),
            "a\\x1b[2Jb\\r\\nc\\u{202e}d\\x7f"
        );
    }
}
