//! A tiny synthetic corpus in the real packages' formats, so that tests and offline demos run
//! the whole path (`.deb` → SWORD module → markup → documents → split → tokens) without the
//! network: two Debian packages, `zoology-fixture-bible` (a `zText` module: 10-byte entry
//! index, book blocks) and `zoology-fixture-notes` (a `zCom4` commentary: 12-byte index,
//! chapter blocks, linked entries, an empty New Testament like `sword-comm-tdavid`). The text
//! is an invented chronicle written for this project (public domain), about 6 KB.
//!
//! [`ModuleBuilder`] writes any module of this kind, for tests of the reader.

use crate::error::Result;
use crate::text::deb::build_deb;
use std::io::Write;

/// Writes the files of a compressed SWORD module (`zText`-style).
pub struct ModuleBuilder {
    record: usize,
    letter: char,
    blocks: Vec<Vec<u8>>,
    index: Vec<(u32, u32, u32)>,
}

impl ModuleBuilder {
    /// `record` = 10 (`zText`, `zCom`) or 12 (`zText4`, `zCom4`); `letter` = block type (`b`, `c`).
    pub fn new(record: usize, letter: char) -> Self {
        assert!(record == 10 || record == 12);
        ModuleBuilder { record, letter, blocks: vec![vec![]], index: vec![] }
    }
    /// Starts a new compressed block (a book or chapter boundary).
    pub fn new_block(&mut self) {
        if !self.blocks.last().unwrap().is_empty() {
            self.blocks.push(vec![]);
        }
    }
    /// The next index slot holds `markup`.
    pub fn push(&mut self, markup: &str) {
        let b = self.blocks.len() - 1;
        let start = self.blocks[b].len();
        self.blocks[b].extend(markup.as_bytes());
        self.index.push((b as u32, start as u32, markup.len() as u32));
    }
    /// The next index slot is empty.
    pub fn push_empty(&mut self) {
        self.index.push((0, 0, 0));
    }
    /// The next index slot points at the same entry as the previous one (a linked verse).
    pub fn link(&mut self) {
        let last = *self.index.last().expect("link after an entry");
        self.index.push(last);
    }
    /// `(path, bytes)` of `<dir>/<testament>.{letter}zs/zz/zv`.
    pub fn files(&self, dir: &str, testament: &str) -> Vec<(String, Vec<u8>)> {
        let (mut zs, mut zz, mut zv) = (vec![], vec![], vec![]);
        for b in &self.blocks {
            let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(b).expect("in-memory write");
            let c = enc.finish().expect("in-memory write");
            for v in [zz.len() as u32, c.len() as u32, b.len() as u32] {
                zs.extend(v.to_le_bytes());
            }
            zz.extend(c);
        }
        for &(b, s, n) in &self.index {
            zv.extend(b.to_le_bytes());
            zv.extend(s.to_le_bytes());
            if self.record == 10 {
                zv.extend((n as u16).to_le_bytes());
            } else {
                zv.extend(n.to_le_bytes());
            }
        }
        let l = self.letter;
        vec![
            (format!("{dir}/{testament}.{l}zs"), zs),
            (format!("{dir}/{testament}.{l}zz"), zz),
            (format!("{dir}/{testament}.{l}zv"), zv),
        ]
    }
}

/// The chronicle: books of chapters of verses (plain sentences; markup is added around them).
const BOOKS: &[(&str, &str, &[&[&str]])] = &[
    (
        "Lamp",
        "The Book of the Lighthouse",
        &[
            &[
                "In the first year of the harbour, Mara Quill kept the lighthouse on the northern cape.",
                "Every evening Mara Quill climbed the hundred steps and trimmed the wick of the great lamp.",
                "The fishermen of Dunmore said that the lamp of Mara Quill never failed, not in wind and not in rain.",
                "She wrote the name of every ship that passed into a green ledger, and the ledger grew thick.",
                "When the ledger was full, she began a second ledger and bound it in sailcloth.",
            ],
            &[
                "In the second year a storm came out of the west, and the sea rose over the lower rocks.",
                "The ship Sparrow of Dunmore lost her mast and drifted toward the northern cape.",
                "Mara Quill saw the Sparrow from the gallery and rang the bell seven times.",
                "The men of Dunmore heard the bell and rowed out with ropes, and the crew of the Sparrow was saved.",
                "Afterwards the captain of the Sparrow came up the hundred steps and said, \"Keeper, we owe you our lives.\"",
                "Mara Quill answered, \"Write your name in the green ledger, and trim your own lamp well.\"",
            ],
            &[
                "In the third year Tobin Vale came to the cape to learn the keeping of the light.",
                "Mara Quill taught Tobin Vale to trim the wick, to polish the lens, and to read the weather from the gulls.",
                "Tobin Vale asked why she wrote every name, and she said that a harbour remembers its ships.",
                "So Tobin Vale kept the second ledger, and Mara Quill kept the first.",
            ],
        ],
    ),
    (
        "Harb",
        "The Book of the Harbour",
        &[
            &[
                "The harbour of Dunmore lies between two arms of black rock, and its water is calm when the sea is wild.",
                "Fourteen boats belonged to the harbour, and each boat carried a lantern at the bow.",
                "The harbour master, Elias Brand, counted the boats at dawn and counted them again at dusk.",
                "If a boat was missing at dusk, Elias Brand sent word to the lighthouse on the northern cape.",
            ],
            &[
                "One winter the boat called Heron did not come home, and Elias Brand sent word to the lighthouse.",
                "Tobin Vale lit the great lamp early, and Mara Quill rang the bell seven times.",
                "Near midnight the lantern of the Heron was seen beyond the black rock, small and yellow.",
                "The Heron came into the harbour of Dunmore with torn nets and a crew that was cold but whole.",
                "Elias Brand counted fourteen boats, and wrote in his own book that the Heron was home.",
            ],
            &[
                "Years later Tobin Vale became the keeper, and Mara Quill lived in a white house by the harbour.",
                "On clear evenings she walked to the end of the pier and watched the lamp on the northern cape.",
                "The green ledgers are kept in the harbour office, and anyone may read the names of the ships.",
            ],
        ],
    ),
];

/// Commentary per (book, chapter), with a heading.
const NOTES: &[(&str, usize, &str, &str)] = &[
    ("Lamp", 1, "Verses 1-3", "The keeper is named three times in three verses: the chronicle wants the reader to remember Mara Quill. The green ledger is the first record of the harbour."),
    ("Lamp", 2, "Verses 1-6", "The storm chapter turns on the bell. Seven strokes of the bell call the men of Dunmore; the same seven strokes return when the Heron is lost in the Book of the Harbour."),
    ("Lamp", 3, "Verses 1-4", "Tobin Vale learns three crafts: the wick, the lens and the weather. The two ledgers divide the work between the old keeper and the new keeper."),
    ("Harb", 1, "Verses 1-4", "Elias Brand counts the boats twice a day. The number fourteen matters later, when every boat comes home and the count is whole again."),
    ("Harb", 2, "Verses 1-5", "The lantern of the Heron answers the lamp of the lighthouse: a small light finds a large one. The chronicle repeats the seven strokes of the bell."),
    ("Harb", 3, "Verses 1-3", "The book ends where it began, with the lamp on the northern cape and the names in the green ledger."),
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;")
}

/// Dresses a verse in OSIS the way the real modules do: Strong's-style `<w>` wrappers, a
/// footnote, a `<transChange>`, paragraph milestones.
fn verse_markup(v: &str, i: usize) -> String {
    let words: Vec<String> = v
        .split(' ')
        .enumerate()
        .map(|(j, w)| if j % 3 == 0 { format!("<w lemma=\"strong:H{:04}\">{}</w>", 100 + j, esc(w)) } else { esc(w) })
        .collect();
    let mut m = String::new();
    if i % 3 == 0 {
        m += "<div type=\"x-milestone\" subType=\"x-preverse\" sID=\"pv\"/><div sID=\"p\" type=\"x-p\"/><div type=\"x-milestone\" subType=\"x-preverse\" eID=\"pv\"/>";
    }
    m += &words.join(" ");
    if i == 1 {
        m += "<note placement=\"foot\"><reference type=\"annotateRef\">1:2 </reference>Some copies read <hi type=\"italic\">stair</hi> for steps.</note>";
    }
    if i == 2 {
        m += " <transChange type=\"added\">¶</transChange>";
    }
    m
}

/// The Bible module's files (paths relative to the SWORD root).
pub fn bible_module() -> Vec<(String, Vec<u8>)> {
    let dir = "modules/texts/ztext/fixturebible";
    let mut b = ModuleBuilder::new(10, 'b');
    b.push_empty();
    b.push("<milestone type=\"x-importer\" subType=\"x-osis2mod\" n=\"fixture\"/>");
    for (book, title, chapters) in BOOKS {
        b.new_block();
        b.push(&format!("<div canonical=\"true\" osisID=\"{book}\" sID=\"{book}b\" type=\"book\"/> <milestone n=\"{book}\" type=\"x-usfm-toc3\"/> <title level=\"1\" type=\"main\">{title}</title>"));
        for (c, verses) in chapters.iter().enumerate() {
            b.push(&format!("<chapter n=\"{0}\" osisID=\"{book}.{0}\" sID=\"{book}.{0}\"/> ", c + 1));
            for (i, v) in verses.iter().enumerate() {
                b.push(&verse_markup(v, i));
            }
            b.push(&format!("<chapter eID=\"{book}.{}\"/>", c + 1));
        }
    }
    let conf = "[FixtureBible]\nDataPath=./modules/texts/ztext/fixturebible/\nModDrv=zText\nSourceType=OSIS\nEncoding=UTF-8\nCompressType=ZIP\nBlockType=BOOK\nVersion=1.0\nDescription=zoology-rs fixture: an invented chronicle\nAbout=A long value \\\ncontinued on a second line\n";
    let mut files = vec![("mods.d/fixturebible.conf".to_string(), conf.as_bytes().to_vec())];
    files.extend(b.files(dir, "ot"));
    files
}

/// The commentary module's files: chapter blocks, one comment per chapter linked to every
/// verse slot of the chapter, a table of contents per book, an empty New Testament.
pub fn notes_module() -> Vec<(String, Vec<u8>)> {
    let dir = "modules/comments/zcom/fixturenotes";
    let mut b = ModuleBuilder::new(12, 'c');
    b.push_empty();
    b.push("<milestone type=\"x-importer\" subType=\"x-osis2mod\" n=\"fixture\"/>");
    for (book, title, chapters) in BOOKS {
        b.new_block();
        b.push(&format!(
            "<div canonical=\"true\" osisID=\"{book}\" sID=\"{book}n\" type=\"book\"/><title type=\"x-ms\">{title}</title> <table><row><cell>Chapter 1</cell><cell>The beginning</cell></row><row><cell>Chapter {}</cell><cell>The end</cell></row></table>",
            chapters.len()
        ));
        for (c, verses) in chapters.iter().enumerate() {
            b.new_block();
            b.push(&format!("<chapter n=\"{0}\" osisID=\"{book}.{0}\" sID=\"{book}.{0}\"/>", c + 1));
            let (_, _, head, text) = NOTES.iter().find(|n| n.0 == *book && n.1 == c + 1).expect("a note per chapter");
            b.push(&format!("<div sID=\"n\" type=\"x-p\"/><hi type=\"bold\">{head}</hi><div eID=\"n\" type=\"x-p\"/> <div sID=\"m\" type=\"x-p\"/>{}<div eID=\"m\" type=\"x-p\"/>", esc(text)));
            for _ in 1..verses.len() {
                b.link();
            }
        }
    }
    let conf = "[FixtureNotes]\nDataPath=./modules/comments/zcom/fixturenotes/\nModDrv=zCom4\nSourceType=OSIS\nEncoding=UTF-8\nCompressType=ZIP\nBlockType=CHAPTER\nVersion=2.0\nDescription=zoology-rs fixture: notes on the chronicle\n";
    let mut files = vec![("mods.d/fixturenotes.conf".to_string(), conf.as_bytes().to_vec())];
    files.extend(b.files(dir, "ot"));
    for ext in ["czs", "czz", "czv"] {
        files.push((format!("{dir}/nt.{ext}"), vec![]));
    }
    files
}

/// The two fixture packages: `(file name, .deb bytes)`.
pub fn debs() -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = vec![];
    for (name, version, files) in
        [("zoology-fixture-bible", "1.0", bible_module()), ("zoology-fixture-notes", "2.0", notes_module())]
    {
        let mut all: Vec<(String, Vec<u8>)> =
            files.into_iter().map(|(p, b)| (format!("usr/share/sword/{p}"), b)).collect();
        all.push((format!("usr/share/doc/{name}/copyright"), b"Public domain: written for zoology-rs.\n".to_vec()));
        out.push((format!("{name}_{version}_all.deb"), build_deb(name, version, &all)?));
    }
    Ok(out)
}
