//! OSIS / ThML markup to plain text, and the structure markers that cut it into documents.
//!
//! Rules (one pass over tags and text; tags are never nested wrongly in SWORD modules, and a
//! stray one only ends a skipped region early):
//! - `<note>…</note>` is dropped with everything inside (footnotes, cross-references, Strong's
//!   glosses, alternative readings): editorial apparatus, not the text.
//! - Block elements (`div p l lg lb title item row list table br chapter head h1–h6`, ThML's
//!   `div1–div6`, `li ul ol`; opening,
//!   closing or self-closing) end the current line: the output has one paragraph, title or
//!   poetic line per line and no blank lines.
//! - `<cell>` becomes a space; every other tag (`w`, `transChange`, `hi`, `q`, `divineName`,
//!   `reference`, `scripRef`, `foreign`, `milestone`, ...) is removed and its content kept.
//! - Runs of whitespace become one space; entities (`&amp; &lt; &gt; &quot; &apos; &nbsp;`,
//!   `&#N;`, `&#xH;`) are decoded, unknown ones kept as written.
//! - A chapter start (`<chapter osisID="Gen.1" sID=…/>`, or a non-self-closing `<chapter>`)
//!   emits [`Marker::Chapter`]; a book start (`<div type="book" osisID="Gen" …>`) emits
//!   [`Marker::Book`]. End markers (`eID`) emit nothing.

/// A structure marker met in the markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// A book starts (its OSIS id, e.g. `Gen`).
    Book(String),
    /// A chapter starts (its OSIS id, e.g. `Gen.1`).
    Chapter(String),
}

/// Accumulates plain text with normalised whitespace: words separated by one space, lines
/// (paragraphs) by one `\n`, nothing leading or trailing.
#[derive(Debug, Default, Clone)]
pub struct TextBuilder {
    buf: String,
    space: bool,
    newline: bool,
}

impl TextBuilder {
    pub fn push_str(&mut self, s: &str) {
        for c in s.chars() {
            self.push(c);
        }
    }
    pub fn push(&mut self, c: char) {
        if c.is_whitespace() {
            self.space = true;
            return;
        }
        if !self.buf.is_empty() {
            if self.newline {
                self.buf.push('\n');
            } else if self.space {
                self.buf.push(' ');
            }
        }
        self.space = false;
        self.newline = false;
        self.buf.push(c);
    }
    /// Ends the current line (a no-op at the start or right after another break).
    pub fn line_break(&mut self) {
        self.newline = true;
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// The text so far; the builder starts over.
    pub fn take(&mut self) -> String {
        self.space = false;
        self.newline = false;
        std::mem::take(&mut self.buf)
    }
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    // tag = `name a="x" b='y'` without the angle brackets
    let mut rest = tag;
    while let Some(i) = rest.find(name) {
        let before_ok = i == 0 || rest.as_bytes()[i - 1].is_ascii_whitespace();
        let after = &rest[i + name.len()..];
        let after_t = after.trim_start();
        if before_ok && after_t.starts_with('=') {
            let v = after_t[1..].trim_start();
            let q = v.chars().next()?;
            if q == '"' || q == '\'' {
                let v = &v[1..];
                return v.find(q).map(|end| &v[..end]);
            }
            return Some(v.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or(""));
        }
        rest = after;
    }
    None
}

/// Decodes one entity body (between `&` and `;`), or `None` if unknown.
fn entity(body: &str) -> Option<char> {
    match body {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => {
            let n = if let Some(h) = body.strip_prefix("#x").or_else(|| body.strip_prefix("#X")) {
                u32::from_str_radix(h, 16).ok()?
            } else {
                body.strip_prefix('#')?.parse::<u32>().ok()?
            };
            char::from_u32(n)
        }
    }
}

const BLOCK_TAGS: &[&str] = &[
    "div", "div1", "div2", "div3", "div4", "div5", "div6", "p", "l", "lg", "lb", "title", "item", "row", "list",
    "table", "br", "chapter", "head", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol",
];

/// Streams markup into a [`TextBuilder`] and reports structure markers. Keeps no state between
/// calls except the text builder, so one malformed entry cannot hide the next.
#[derive(Debug, Default)]
pub struct Stripper {
    pub text: TextBuilder,
}

impl Stripper {
    /// Feeds one entry's markup; `on_marker` is called at each book/chapter start, after the
    /// text before it has been added to `self.text` (so the callback can `take()` it).
    pub fn feed(&mut self, markup: &str, mut on_marker: impl FnMut(&mut TextBuilder, Marker)) {
        let mut skip = 0usize; // depth inside <note>
        let mut i = 0;
        let b = markup.as_bytes();
        while i < b.len() {
            match b[i] {
                b'<' => {
                    if markup[i..].starts_with("<!--") {
                        i = markup[i..].find("-->").map(|e| i + e + 3).unwrap_or(b.len());
                        continue;
                    }
                    let end = match markup[i..].find('>') {
                        Some(e) => i + e,
                        None => break, // truncated tag: drop the rest
                    };
                    let inner = &markup[i + 1..end];
                    i = end + 1;
                    let closing = inner.starts_with('/');
                    let self_closing = inner.ends_with('/');
                    let body = inner.trim_start_matches('/').trim_end_matches('/').trim();
                    let name_end = body.find(|c: char| c.is_whitespace()).unwrap_or(body.len());
                    let name = body[..name_end].to_ascii_lowercase();
                    if name == "note" {
                        if closing {
                            skip = skip.saturating_sub(1);
                        } else if !self_closing {
                            skip += 1;
                        }
                        continue;
                    }
                    if skip > 0 {
                        continue;
                    }
                    if !closing && attr(body, "eID").is_none() {
                        let marker = match name.as_str() {
                            "chapter" => attr(body, "osisID").map(|id| Marker::Chapter(id.to_string())),
                            "div" if attr(body, "type") == Some("book") => {
                                attr(body, "osisID").map(|id| Marker::Book(id.to_string()))
                            }
                            _ => None,
                        };
                        if let Some(m) = marker {
                            on_marker(&mut self.text, m);
                        }
                    }
                    if BLOCK_TAGS.contains(&name.as_str()) {
                        self.text.line_break();
                    } else if name == "cell" {
                        self.text.push(' ');
                    }
                }
                b'&' if skip == 0 => {
                    let semi = markup[i..].find(';').filter(|&s| s <= 10);
                    match semi.and_then(|s| entity(&markup[i + 1..i + s]).map(|c| (s, c))) {
                        Some((s, c)) => {
                            self.text.push(c);
                            i += s + 1;
                        }
                        None => {
                            self.text.push('&');
                            i += 1;
                        }
                    }
                }
                _ => {
                    // copy the run of plain text up to the next tag or entity
                    let next = markup[i..].find(['<', '&']).map(|e| i + e).unwrap_or(b.len());
                    let next = if next == i { i + 1 } else { next };
                    if skip == 0 {
                        self.text.push_str(&markup[i..next]);
                    }
                    i = next;
                }
            }
        }
        // entries are verse-sized fragments: their boundary separates words
        self.text.push(' ');
    }
}

/// Plain text of one markup string (markers ignored).
pub fn strip(markup: &str) -> String {
    let mut s = Stripper::default();
    s.feed(markup, |_, _| {});
    s.text.take()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_tags_notes_entities_and_keeps_lines() {
        let m = r#"<title type="psalm">A Psalm &amp; song</title><w lemma="strong:H1">In</w>  the <transChange type="added">beginning</transChange><note placement="foot"><reference>1:1</reference>The <hi>note</hi> text</note>, God&#39;s <divineName>Lord</divineName>&#x2019;s &unknown; <l sID="x"/>line two<l eID="x"/><lb/>"#;
        assert_eq!(strip(m), "A Psalm & song\nIn the beginning, God's Lord\u{2019}s &unknown;\nline two");
    }

    #[test]
    fn thml_paragraphs_scripture_references_and_notes() {
        let m = r#"<div2 title="Psalm 1"><p>Blessed is the man<note n="1">a note</note>, <scripRef passage="Ps 1:1">Ps 1:1</scripRef>.</p><p class="x">Second<br />line &#8212; <sync type="Strongs" value="H1"/>end</p></div2>"#;
        assert_eq!(strip(m), "Blessed is the man, Ps 1:1.\nSecond\nline \u{2014} end");
    }

    #[test]
    fn nested_notes_and_cells() {
        assert_eq!(strip("a<note>b<note>c</note>d</note>e <row><cell>x</cell><cell>y</cell></row>z"), "ae\nx y\nz");
    }

    #[test]
    fn markers_split_text_at_the_right_place() {
        let mut s = Stripper::default();
        let mut docs = vec![];
        let markup = r#"intro <div type="book" osisID="Gen" sID="g1"/>book intro <chapter osisID="Gen.1" sID="Gen.1"/>verse one <chapter eID="Gen.1"/><chapter osisID="Gen.2" sID="Gen.2"/>two"#;
        s.feed(markup, |t, m| docs.push((t.take(), m)));
        let rest = s.text.take();
        assert_eq!(
            docs,
            vec![
                ("intro".to_string(), Marker::Book("Gen".into())),
                ("book intro".to_string(), Marker::Chapter("Gen.1".into())),
                ("verse one".to_string(), Marker::Chapter("Gen.2".into())),
            ]
        );
        assert_eq!(rest, "two");
    }

    #[test]
    fn attributes_with_either_quote() {
        assert_eq!(attr(r#"chapter osisID='Ps.23' sID="x""#, "osisID"), Some("Ps.23"));
        assert_eq!(attr(r#"chapter sID="x" osisID="Ps.23""#, "ID"), None);
        assert_eq!(attr(r#"div type="book""#, "type"), Some("book"));
    }
}
