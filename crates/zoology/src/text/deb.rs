//! Debian packages read and written in memory, without `dpkg-deb`.
//!
//! A `.deb` is an `ar` archive of `debian-binary`, `control.tar.*` and `data.tar.*`; the data
//! member is compressed with xz (Debian), zstd (Ubuntu since 21.10), gzip, or not at all. Doing
//! this in Rust (pure-Rust `ar` parsing, the `tar`, `lzma-rs`, `zstd` and `flate2` crates) keeps
//! the reader independent of the host's tools, so a directory of `.deb` files fetched elsewhere
//! can be used on any system (`zoology corpus fetch --debs DIR`), and tests build and read
//! packages without touching the file system.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::io::Read;

/// The members of an `ar` archive, in order: `(name, bytes)`.
pub fn ar_members<'a>(ar: &'a [u8], file: &str) -> Result<Vec<(String, &'a [u8])>> {
    let bad = |m: String| Error::Data(format!("{file}: not a Debian package (ar archive): {m}"));
    if !ar.starts_with(b"!<arch>\n") {
        return Err(bad("missing the `!<arch>` magic".into()));
    }
    let mut out = vec![];
    let mut at = 8;
    while at < ar.len() {
        let h = ar.get(at..at + 60).ok_or_else(|| bad(format!("truncated member header at byte {at}")))?;
        if &h[58..60] != b"`\n" {
            return Err(bad(format!("bad member header at byte {at}")));
        }
        let name = String::from_utf8_lossy(&h[..16]).trim_end().trim_end_matches('/').to_string();
        let size: usize = String::from_utf8_lossy(&h[48..58])
            .trim()
            .parse()
            .map_err(|_| bad(format!("bad size of member {name}")))?;
        let data = ar.get(at + 60..at + 60 + size).ok_or_else(|| bad(format!("member {name} runs past the end")))?;
        out.push((name, data));
        at += 60 + size + (size & 1);
    }
    Ok(out)
}

/// Regular files of the package's data archive whose path starts with `prefix` (e.g.
/// `usr/share/sword/`), keyed by the path after the prefix.
pub fn data_files(deb: &[u8], file: &str, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    tar_files(deb, file, "data.tar", prefix)
}

/// A field of the package's control file (`Version`, `Package`, ...).
pub fn control_field(deb: &[u8], file: &str, field: &str) -> Result<String> {
    let files = tar_files(deb, file, "control.tar", "")?;
    let control =
        files.get("control").ok_or_else(|| Error::Data(format!("{file}: control.tar has no control file")))?;
    String::from_utf8_lossy(control)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
        .ok_or_else(|| Error::Data(format!("{file}: the control file has no {field} field")))
}

/// Regular files under `prefix` of the `ar` member whose name starts with `member`.
fn tar_files(deb: &[u8], file: &str, member: &str, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let members = ar_members(deb, file)?;
    let (name, data) = members.iter().find(|(n, _)| n.starts_with(member)).ok_or_else(|| {
        Error::Data(format!(
            "{file}: no {member} member (members: {})",
            members.iter().map(|m| m.0.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let tar_bytes = decompress(name, data).map_err(|m| Error::Data(format!("{file}: {name}: {m}")))?;
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut out = BTreeMap::new();
    let terr = |e: std::io::Error| Error::Data(format!("{file}: {name}: bad tar archive: {e}"));
    for entry in archive.entries().map_err(terr)? {
        let mut entry = entry.map_err(terr)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(terr)?.to_string_lossy().trim_start_matches("./").to_string();
        if let Some(rel) = path.strip_prefix(prefix) {
            let mut buf = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut buf).map_err(terr)?;
            out.insert(rel.to_string(), buf);
        }
    }
    Ok(out)
}

fn decompress(name: &str, data: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match name.rsplit('.').next() {
        Some("xz") => lzma_rs::xz_decompress(&mut &data[..], &mut out).map_err(|e| format!("xz: {e:?}"))?,
        Some("gz") => {
            flate2::read::GzDecoder::new(data).read_to_end(&mut out).map_err(|e| format!("gzip: {e}"))?;
        }
        Some("zst") => out = zstd::stream::decode_all(data).map_err(|e| format!("zstd: {e}"))?,
        Some("tar") => out = data.to_vec(),
        Some(other) => return Err(format!("unsupported compression `.{other}` (xz, zst, gz or none)")),
        None => unreachable!("rsplit yields at least one item"),
    }
    Ok(out)
}

/// Builds a `.deb` (xz-compressed members) holding `files` (`(path, bytes)`, paths relative to
/// `/`) with a minimal control file. Used for the fixture corpus.
pub fn build_deb(package: &str, version: &str, files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let tar_of = |files: &[(String, Vec<u8>)]| -> Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, format!("./{path}"), &bytes[..])
                .map_err(|e| Error::Other(format!("building {package}.deb: {e}")))?;
        }
        b.into_inner().map_err(|e| Error::Other(format!("building {package}.deb: {e}")))
    };
    let xz = |raw: Vec<u8>| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut &raw[..], &mut out)
            .map_err(|e| Error::Other(format!("building {package}.deb: xz: {e}")))?;
        Ok(out)
    };
    let control = format!("Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: zoology-rs\nDescription: zoology-rs fixture\n");
    let members: Vec<(&str, Vec<u8>)> = vec![
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar.xz", xz(tar_of(&[("control".into(), control.into_bytes())])?)?),
        ("data.tar.xz", xz(tar_of(files)?)?),
    ];
    let mut ar = b"!<arch>\n".to_vec();
    for (name, data) in members {
        ar.extend(format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", name, 0, 0, 0, 100644, data.len()).as_bytes());
        ar.extend(&data);
        if data.len() % 2 == 1 {
            ar.push(b'\n');
        }
    }
    Ok(ar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_package_reads_back() {
        let files = vec![
            ("usr/share/sword/mods.d/x.conf".to_string(), b"[X]\n".to_vec()),
            ("usr/share/doc/x/copyright".to_string(), b"odd".to_vec()),
        ];
        let deb = build_deb("x", "1.0", &files).unwrap();
        let members = ar_members(&deb, "x.deb").unwrap();
        assert_eq!(
            members.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
            ["debian-binary", "control.tar.xz", "data.tar.xz"]
        );
        let got = data_files(&deb, "x.deb", "usr/share/sword/").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got["mods.d/x.conf"], b"[X]\n");
        assert_eq!(control_field(&deb, "x.deb", "Version").unwrap(), "1.0");
        assert!(control_field(&deb, "x.deb", "Depends").unwrap_err().to_string().contains("Depends"));
    }

    #[test]
    fn rejects_non_packages() {
        let e = data_files(b"PK\x03\x04 not an ar file", "bad.deb", "").unwrap_err().to_string();
        assert!(e.contains("bad.deb") && e.contains("magic"), "{e}");
    }
}
