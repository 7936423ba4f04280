//! Reader for compressed SWORD modules (drivers `zText`, `zText4`, `zCom`, `zCom4`).
//!
//! A module is a `mods.d/<name>.conf` file (INI-like: `[Name]`, `Key=Value`) and, under its
//! `DataPath`, per testament (`ot`, `nt`) three files whose middle letter is the block type
//! (`b` book, `c` chapter, `v` verse blocks):
//! - `ot.bzs`, the block index: 12-byte little-endian records `(offset u32, compressed size u32,
//!   uncompressed size u32)` into
//! - `ot.bzz`, the zlib-compressed blocks (`CompressType=ZIP`);
//! - `ot.bzv`, the entry index, one record per versification slot (module header, testament
//!   header, book intro, chapter heading, verses...): `(block u32, start u32, size u16)` (10
//!   bytes; `zText`/`zCom`) or `(block u32, start u32, size u32)` (12 bytes; the `4` drivers).
//!   An entry's markup is `block[start..start + size]` of the decompressed block.
//!
//! Commentaries link one entry to many verse slots (a comment on verses 3–5 is stored once and
//! indexed three times): entries are deduplicated by `(block, start, size)`, first slot kept.
//! The record size is taken from the driver, except that a file whose length is not a multiple
//! of it but is of the other size is read with the other (Debian's `sword-comm-mhcc` declares
//! `zCom4` but ships 10-byte records).

use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;

/// The parts of a module's `.conf` file the reader needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleConf {
    /// The section name, e.g. `engKJV2006eb`.
    pub name: String,
    /// Module files' directory relative to the SWORD root, without `./` and trailing `/`.
    pub data_path: String,
    pub mod_drv: String,
    /// `OSIS` or `ThML` (markup the stripper understands).
    pub source_type: String,
    pub compress_type: String,
    pub encoding: String,
    pub description: String,
    pub version: String,
    /// Every key (first value of repeated keys).
    pub all: BTreeMap<String, String>,
}

impl ModuleConf {
    /// Parses a `.conf` file; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let mut name = None;
        let mut all: BTreeMap<String, String> = BTreeMap::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let line = line.trim_end_matches('\r');
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.starts_with('[') && t.ends_with(']') {
                if name.is_some() {
                    break; // one module per file; a second section is not ours
                }
                name = Some(t[1..t.len() - 1].trim().to_string());
                continue;
            }
            let Some((k, v)) = t.split_once('=') else { continue };
            let mut v = v.trim().to_string();
            // a value continued on the next lines with a trailing backslash
            while v.ends_with('\\') {
                v.pop();
                match lines.next() {
                    Some(l) => v.push_str(l.trim_end_matches('\r')),
                    None => break,
                }
            }
            all.entry(k.trim().to_string()).or_insert(v);
        }
        let name = name
            .ok_or_else(|| Error::Data(format!("{file}: no `[ModuleName]` section: not a SWORD module .conf file")))?;
        let get = |k: &str| all.get(k).cloned();
        let data_path = get("DataPath").ok_or_else(|| Error::Data(format!("{file}: module {name} has no DataPath")))?;
        let data_path = data_path.trim_start_matches("./").trim_end_matches('/').to_string();
        Ok(ModuleConf {
            name,
            data_path,
            mod_drv: get("ModDrv").unwrap_or_default(),
            source_type: get("SourceType").unwrap_or_else(|| "Plaintext".into()),
            compress_type: get("CompressType").unwrap_or_else(|| "LZSS".into()),
            encoding: get("Encoding").unwrap_or_else(|| "Latin-1".into()),
            description: get("Description").unwrap_or_default(),
            version: get("Version").unwrap_or_default(),
            all,
        })
    }

    /// The entry-index record size the driver declares (10 or 12 bytes).
    fn declared_record_size(&self) -> Result<usize> {
        match self.mod_drv.to_ascii_lowercase().as_str() {
            "ztext" | "zcom" => Ok(10),
            "ztext4" | "zcom4" => Ok(12),
            _ => Err(Error::Data(format!(
                "module {}: driver `ModDrv={}` is not supported (only the compressed zText, zText4, zCom, zCom4)",
                self.name, self.mod_drv
            ))),
        }
    }
}

/// One stored entry of a module, in index order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `"ot"` or `"nt"`.
    pub testament: &'static str,
    /// First index slot that points at this entry.
    pub slot: u32,
    /// The raw markup (OSIS or ThML).
    pub markup: String,
}

/// A module: its conf and its entries in index order (OT then NT), deduplicated.
#[derive(Debug, Clone)]
pub struct SwordModule {
    pub conf: ModuleConf,
    pub entries: Vec<Entry>,
    /// Index slots that pointed at an entry already read (linked verses).
    pub linked_slots: usize,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl SwordModule {
    /// Reads a module. `file(path)` returns the bytes of a file given its path relative to the
    /// SWORD root (`modules/texts/ztext/kjv/ot.bzs`), or `None` if absent.
    pub fn read<'a>(conf: ModuleConf, file: impl Fn(&str) -> Option<&'a [u8]>) -> Result<SwordModule> {
        if !conf.compress_type.eq_ignore_ascii_case("ZIP") {
            return Err(Error::Data(format!(
                "module {}: CompressType={} is not supported (only ZIP, i.e. zlib)",
                conf.name, conf.compress_type
            )));
        }
        let utf8 = conf.encoding.eq_ignore_ascii_case("UTF-8");
        let declared = conf.declared_record_size()?;
        let mut entries = Vec::new();
        let mut linked = 0;
        let mut found_any = false;
        for testament in ["ot", "nt"] {
            let Some(letter) =
                ['b', 'c', 'v'].into_iter().find(|l| file(&format!("{}/{testament}.{l}zs", conf.data_path)).is_some())
            else {
                continue;
            };
            found_any = true;
            let path = |ext: &str| format!("{}/{testament}.{letter}{ext}", conf.data_path);
            let need = |ext: &str| {
                file(&path(ext)).ok_or_else(|| Error::Data(format!("module {}: {} is missing", conf.name, path(ext))))
            };
            let (bzs, bzz, bzv) = (need("zs")?, need("zz")?, need("zv")?);
            if bzs.len() % 12 != 0 {
                return Err(Error::Data(format!(
                    "{}: {} bytes is not a whole number of 12-byte block records",
                    path("zs"),
                    bzs.len()
                )));
            }
            let mut blocks = Vec::with_capacity(bzs.len() / 12);
            for (i, rec) in bzs.chunks_exact(12).enumerate() {
                let (off, csize, usize_) = (u32_at(rec, 0) as usize, u32_at(rec, 4) as usize, u32_at(rec, 8) as usize);
                let raw = bzz.get(off..off + csize).ok_or_else(|| {
                    Error::Data(format!(
                        "{}: block {i} ({off}+{csize}) runs past the end of {} ({} bytes)",
                        path("zs"),
                        path("zz"),
                        bzz.len()
                    ))
                })?;
                let mut out = Vec::with_capacity(usize_);
                if csize > 0 {
                    flate2::read::ZlibDecoder::new(raw)
                        .read_to_end(&mut out)
                        .map_err(|e| Error::Data(format!("{}: block {i} is not a zlib stream: {e}", path("zz"))))?;
                }
                if out.len() != usize_ {
                    return Err(Error::Data(format!(
                        "{}: block {i} decompresses to {} bytes, the index says {usize_}",
                        path("zz"),
                        out.len()
                    )));
                }
                blocks.push(out);
            }
            let records =
                parse_entry_index(bzv, declared, &blocks).map_err(|m| Error::Data(format!("{}: {m}", path("zv"))))?;
            let mut seen: HashSet<(u32, u32, u32)> = HashSet::new();
            for (slot, (b, start, size)) in records.into_iter().enumerate() {
                if size == 0 {
                    continue;
                }
                if !seen.insert((b, start, size)) {
                    linked += 1;
                    continue;
                }
                let bytes = &blocks[b as usize][start as usize..(start + size) as usize];
                let markup = if utf8 {
                    String::from_utf8_lossy(bytes).into_owned()
                } else {
                    bytes.iter().map(|&c| c as char).collect() // Latin-1
                };
                entries.push(Entry { testament, slot: slot as u32, markup });
            }
        }
        if !found_any {
            return Err(Error::Data(format!(
                "module {}: no ot/nt index files (ot.bzs, ot.czs, ...) under {}",
                conf.name, conf.data_path
            )));
        }
        Ok(SwordModule { conf, entries, linked_slots: linked })
    }
}

/// Entry-index records `(block, start, size)`. Tries the declared record size, then the other;
/// a candidate is accepted when the file is a whole number of records and every non-empty
/// record lies inside its block.
fn parse_entry_index(
    bzv: &[u8],
    declared: usize,
    blocks: &[Vec<u8>],
) -> std::result::Result<Vec<(u32, u32, u32)>, String> {
    let other = if declared == 10 { 12 } else { 10 };
    let mut why = vec![];
    for size in [declared, other] {
        if bzv.len() % size != 0 {
            why.push(format!("{} bytes is not a multiple of {size}", bzv.len()));
            continue;
        }
        let recs: Vec<(u32, u32, u32)> = bzv
            .chunks_exact(size)
            .map(|r| {
                let sz = if size == 10 { u16::from_le_bytes([r[8], r[9]]) as u32 } else { u32_at(r, 8) };
                (u32_at(r, 0), u32_at(r, 4), sz)
            })
            .collect();
        let bad = recs.iter().position(|&(b, s, n)| {
            n > 0 && blocks.get(b as usize).is_none_or(|blk| (s as usize + n as usize) > blk.len())
        });
        match bad {
            None => return Ok(recs),
            Some(i) => why.push(format!("with {size}-byte records, record {i} points outside its block")),
        }
    }
    Err(format!("not a valid entry index ({})", why.join("; ")))
}
