//! The corpus: which packages, how their modules become documents, the train/validation split,
//! and [`prepare`], which obtains the packages, derives the text and tokenizes it into a cache
//! folder outside the repository.
//!
//! # Documents and split
//! Each module's entries are stripped to plain text in index order and cut at every book start
//! (a document keyed `<Book>.0`, the book's introduction) and chapter start (keyed by the
//! chapter's OSIS id, `Ps.23`); text before the first marker is keyed `front`. A document is
//! one (module, key); empty documents are dropped.
//!
//! The split is by **key**: `sha256("zoology-rs/split/v1/" + key)`, first 8 bytes as a
//! little-endian u64, modulo 1000, below `valid_permille` → validation. The same chapter of
//! every module lands on the same side: KJV Genesis 1, WEB Genesis 1 and Matthew Henry's comment
//! on Genesis 1 are all in training or all in validation, so a translation or a commentary never
//! leaks a validation chapter into training. What still crosses the split: commentaries quote
//! verses of other chapters, and where KJV and the WEB's NRSVA versification number a few verses
//! differently, those verses sit in different chapters.

use crate::error::{config_err, io_err, Error, Result};
use crate::text::dataset::{self, short, spinner, write_atomic, DatasetManifest};
use crate::text::markup::{Marker, Stripper};
use crate::text::sword::{ModuleConf, SwordModule};
use crate::text::tokenizer::TokenizerSpec;
use crate::text::{deb, fixture, sha256_hex};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Version of `corpus.json` / `documents.jsonl`.
pub const CORPUS_FORMAT: u32 = 1;

/// Where a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A Debian package: `apt-get download NAME=VERSION`, or a file in `--debs DIR`.
    Debian,
    /// Built in memory by [`fixture::debs`] (no network).
    Fixture,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PackageSpec {
    pub name: &'static str,
    pub version: &'static str,
    /// SHA-256 of the `.deb` (Debian's `Packages` index value), checked unless `--any-version`.
    pub sha256: Option<&'static str>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CorpusSpec {
    pub name: &'static str,
    pub about: &'static str,
    pub packages: &'static [PackageSpec],
    /// Per mille of split keys that go to validation.
    pub valid_permille: u32,
    /// SHA-256 of `documents.jsonl` derived from the pinned packages by this code, if known.
    pub text_sha256: Option<&'static str>,
}

const SWORD_EN: &[PackageSpec] = &[
    PackageSpec {
        name: "sword-comm-tdavid",
        version: "2.1-1",
        sha256: Some("bcbfad701c5c4a061475b58309cebc42755a59e87478c8355227c5e046412b3f"),
        origin: Origin::Debian,
    },
    PackageSpec {
        name: "sword-comm-mhcc",
        version: "2.0-1",
        sha256: Some("06f748215de78ff48fdfdee93e3ffc5af6318b976485f7aedf22309236967e35"),
        origin: Origin::Debian,
    },
    PackageSpec {
        name: "sword-text-web",
        version: "426.0-1",
        sha256: Some("930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1"),
        origin: Origin::Debian,
    },
    PackageSpec {
        name: "sword-text-kjv",
        version: "14.3-1",
        sha256: Some("9f463f28ce665f6f528fc723179722bced880a4c5485f7a41bf742838315de57"),
        origin: Origin::Debian,
    },
];

const FIXTURE: &[PackageSpec] = &[
    PackageSpec { name: "zoology-fixture-bible", version: "1.0", sha256: None, origin: Origin::Fixture },
    PackageSpec { name: "zoology-fixture-notes", version: "2.0", sha256: None, origin: Origin::Fixture },
];

/// Every corpus `zoology corpus fetch --corpus NAME` knows.
pub fn corpora() -> Vec<CorpusSpec> {
    vec![
        CorpusSpec {
            name: "sword-en",
            about: "English public-domain prose from Debian's SWORD packages: Spurgeon's Treasury of David, Matthew Henry's Concise Commentary, the World English Bible and the King James Version",
            packages: SWORD_EN,
            valid_permille: 100,
            text_sha256: Some("b8a7672c8bd4f68f624f461f04ef0a40b33e0290ff6d43b770737051e73390d9"),
        },
        CorpusSpec {
            name: "fixture",
            about: "a 6 KB invented chronicle in two synthetic SWORD packages, built in memory (tests, offline demos)",
            packages: FIXTURE,
            valid_permille: 300,
            text_sha256: None,
        },
    ]
}

/// The corpus called `name`; `field` names the flag or config key in errors.
pub fn corpus_spec(name: &str, field: &str) -> Result<CorpusSpec> {
    corpora().into_iter().find(|c| c.name == name).ok_or_else(|| {
        config_err(
            field,
            format!(
                "unknown corpus `{name}` (known: {})",
                corpora().iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

/// `${ZOOLOGY_CORPUS_DIR}`, else `${XDG_CACHE_HOME:-$HOME/.cache}/zoology-rs/corpus`.
pub fn default_corpus_root() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("ZOOLOGY_CORPUS_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| Error::Other("no cache folder: set XDG_CACHE_HOME or HOME, or pass --dir DIR".into()))?;
    Ok(cache.join("zoology-rs").join("corpus"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
        }
    }
    pub fn parse(s: &str, field: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "valid" | "validation" => Ok(Split::Valid),
            _ => Err(config_err(field, format!("unknown split `{s}`: use train or valid"))),
        }
    }
}

/// A key's place in 0..1000 (see the module docs): below `valid_permille` → validation.
pub fn split_bucket(key: &str) -> u64 {
    let h = Sha256::digest(format!("zoology-rs/split/v1/{key}").as_bytes());
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes")) % 1000
}

/// The side of the split a key belongs to (see the module docs).
pub fn split_of(key: &str, valid_permille: u32) -> Split {
    if split_bucket(key) < valid_permille as u64 {
        Split::Valid
    } else {
        Split::Train
    }
}

/// One line of `documents.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// `<module>/<key>` (a repeated key gets `~2`, `~3`, …).
    pub id: String,
    pub module: String,
    pub key: String,
    pub split: Split,
    pub text: String,
}

/// A module's documents before the split: `(key, text)` in order.
pub fn segment(module: &SwordModule) -> Result<Vec<(String, String)>> {
    let st = module.conf.source_type.to_ascii_lowercase();
    if st != "osis" && st != "thml" {
        return Err(Error::Data(format!(
            "module {}: SourceType={} is not supported (OSIS or ThML)",
            module.conf.name, module.conf.source_type
        )));
    }
    let mut s = Stripper::default();
    let mut key = "front".to_string();
    let mut docs: Vec<(String, String)> = vec![];
    for e in &module.entries {
        s.feed(&e.markup, |tb, m| {
            let text = tb.take();
            if !text.is_empty() {
                docs.push((key.clone(), text));
            }
            key = match m {
                Marker::Book(b) => format!("{b}.0"),
                Marker::Chapter(c) => c,
            };
        });
    }
    let text = s.text.take();
    if !text.is_empty() {
        docs.push((key, text));
    }
    Ok(docs)
}

/// What one module contributed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleRecord {
    pub name: String,
    pub description: String,
    pub version: String,
    pub driver: String,
    pub markup: String,
    /// Stored entries read (after deduplication).
    pub entries: usize,
    /// Index slots that pointed at an already-read entry.
    pub linked_slots: usize,
    pub documents: usize,
    pub chars: usize,
}

/// The modules of a `.deb`, read, stripped and segmented: `(record, documents)` per module.
pub fn read_package(deb_bytes: &[u8], file: &str) -> Result<Vec<(ModuleRecord, Vec<(String, String)>)>> {
    let files = deb::data_files(deb_bytes, file, "usr/share/sword/")?;
    let confs: Vec<&String> = files.keys().filter(|k| k.starts_with("mods.d/") && k.ends_with(".conf")).collect();
    if confs.is_empty() {
        return Err(Error::Data(format!("{file}: no SWORD module (no usr/share/sword/mods.d/*.conf)")));
    }
    let mut out = vec![];
    for c in confs {
        let conf = ModuleConf::parse(&String::from_utf8_lossy(&files[c]), &format!("{file}:{c}"))?;
        let m = SwordModule::read(conf, |p| files.get(p).map(|v| v.as_slice()))?;
        let docs = segment(&m)?;
        let rec = ModuleRecord {
            name: m.conf.name.clone(),
            description: m.conf.description.clone(),
            version: m.conf.version.clone(),
            driver: m.conf.mod_drv.clone(),
            markup: m.conf.source_type.clone(),
            entries: m.entries.len(),
            linked_slots: m.linked_slots,
            documents: docs.len(),
            chars: docs.iter().map(|d| d.1.chars().count()).sum(),
        };
        out.push((rec, docs));
    }
    Ok(out)
}

/// A package as used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageRecord {
    pub name: String,
    /// From the package's control file.
    pub version: String,
    pub sha256: String,
    pub file: String,
    pub bytes: usize,
    pub modules: Vec<ModuleRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitCount {
    pub documents: usize,
    pub keys: usize,
    pub chars: usize,
}

/// `corpus.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusManifest {
    pub format: u32,
    pub corpus: String,
    pub about: String,
    pub packages: Vec<PackageRecord>,
    pub split_rule: String,
    pub valid_permille: u32,
    pub train: SplitCount,
    pub valid: SplitCount,
    pub text_file: String,
    /// SHA-256 of `documents.jsonl`; later runs verify it.
    pub text_sha256: String,
    pub derive_s: f64,
    pub created_by: String,
}

impl CorpusManifest {
    /// Reads `<dir>/corpus.json` and checks that `documents.jsonl` still has its checksum.
    pub fn load_verified(dir: &Path) -> Result<CorpusManifest> {
        let p = dir.join("corpus.json");
        match std::fs::metadata(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&p)(e)),
            _ => {}
        }
        if !p.exists() {
            return Err(Error::Data(format!("{} not found: the corpus is not prepared; run `zoology corpus fetch` (see `zoology corpus fetch --help`)", p.display())));
        }
        let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
        let m: CorpusManifest = serde_json::from_str(&text)
            .map_err(|e| Error::Data(format!("{}: {e}; run `zoology corpus fetch --force`", p.display())))?;
        if m.format != CORPUS_FORMAT {
            return Err(Error::Data(format!(
                "{}: format {} (this version reads {CORPUS_FORMAT}); run `zoology corpus fetch --force`",
                p.display(),
                m.format
            )));
        }
        let tp = dir.join(&m.text_file);
        let bytes = std::fs::read(&tp).map_err(io_err(&tp))?;
        let got = sha256_hex(&bytes);
        if got != m.text_sha256 {
            return Err(Error::Data(format!(
                "{}: checksum {} does not match corpus.json ({}): the derived text was modified; run `zoology corpus fetch --corpus {} --force`",
                tp.display(),
                short(&got),
                short(&m.text_sha256),
                m.corpus
            )));
        }
        Ok(m)
    }
}

/// Reads the verified documents of a prepared corpus.
pub fn load_documents(dir: &Path) -> Result<(CorpusManifest, Vec<Document>)> {
    let m = CorpusManifest::load_verified(dir)?;
    let tp = dir.join(&m.text_file);
    let text = std::fs::read_to_string(&tp).map_err(io_err(&tp))?;
    let docs = text
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| Error::Data(format!("{} line {}: {e}", tp.display(), i + 1))))
        .collect::<Result<Vec<Document>>>()?;
    Ok((m, docs))
}

/// Where packages come from for [`Origin::Debian`] packages.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `apt-get download NAME=VERSION` (needs Debian/Ubuntu apt with the package lists).
    Apt,
    /// `.deb` files already downloaded into this directory.
    Dir(PathBuf),
}

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Root of the corpus cache (`<root>/<corpus name>/`).
    pub root: PathBuf,
    pub source: Source,
    /// Accept package versions other than the pinned ones (the text then differs; the actual
    /// versions and checksums are recorded).
    pub any_version: bool,
    pub tokenizers: Vec<TokenizerSpec>,
    /// Derive and tokenize again even if the cache verifies.
    pub force: bool,
    pub quiet: bool,
}

/// Wall time of one step of [`prepare`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepTime {
    pub step: String,
    pub seconds: f64,
    /// The cache already held a verified result.
    pub cached: bool,
}

#[derive(Debug, Clone)]
pub struct PrepareReport {
    pub dir: PathBuf,
    pub corpus: CorpusManifest,
    pub datasets: Vec<DatasetManifest>,
    pub steps: Vec<StepTime>,
}

/// `apt-get download NAME[=VERSION]` into `tmp`; returns the `.deb` it wrote.
fn apt_download(name: &str, version: Option<&str>, tmp: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    let arg = match version {
        Some(v) => format!("{name}={v}"),
        None => name.to_string(),
    };
    let out = Command::new("apt-get").arg("download").arg(&arg).current_dir(tmp).output().map_err(|e| {
        Error::Other(format!(
            "running `apt-get download {arg}`: {e}. This corpus comes from Debian packages: on a system without apt, download {name}_{}_all.deb from packages.debian.org and pass --debs DIR",
            version.unwrap_or("VERSION")
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "`apt-get download {arg}` failed: {}. Fixes: `sudo apt-get update` (stale package lists); --any-version to take the version your apt offers (the derived text then differs from the pinned one); or download the .deb yourself and pass --debs DIR",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let found: Vec<PathBuf> = std::fs::read_dir(tmp)
        .map_err(io_err(tmp))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}_")) && n.ends_with(".deb"))
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Other(format!(
            "`apt-get download {arg}` succeeded but left {} matching .deb files in {}",
            found.len(),
            tmp.display()
        ))),
    }
}

/// The `.deb` of a package in `dir`: `NAME_VERSION_*.deb`, or with `any_version` any
/// `NAME_*.deb` (the only one).
fn find_deb(dir: &Path, p: &PackageSpec, any_version: bool) -> Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|path| {
            let n = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let exact = n.starts_with(&format!("{}_{}_", p.name, p.version.replace(':', "%3a")));
            n.ends_with(".deb") && (exact || (any_version && n.starts_with(&format!("{}_", p.name))))
        })
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Error::Other(format!(
            "{}: several .deb files for {} ({}); keep one",
            dir.display(),
            p.name,
            found.iter().filter_map(|f| f.file_name()?.to_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Obtains one package into `<dir>/debs/`, verifies it, and returns its bytes and record.
fn obtain(p: &PackageSpec, dir: &Path, opts: &PrepareOptions) -> Result<(Vec<u8>, PackageRecord, bool)> {
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).map_err(io_err(&debs))?;
    let pinned = p.sha256.filter(|_| !opts.any_version);
    let verify = |bytes: &[u8], path: &Path| -> Result<()> {
        if let Some(want) = pinned {
            let got = sha256_hex(bytes);
            if got != want {
                return Err(Error::Data(format!(
                    "{}: SHA-256 {got} is not the pinned {want} of {} {}; delete it, or pass --any-version to use it anyway",
                    path.display(),
                    p.name,
                    p.version
                )));
            }
        }
        Ok(())
    };
    // a verified copy in the cache?
    let mut cached = false;
    let mut path = None;
    if let Some(c) = find_deb(&debs, p, opts.any_version)? {
        let bytes = std::fs::read(&c).map_err(io_err(&c))?;
        if verify(&bytes, &c).is_ok() {
            cached = true;
            path = Some(c);
        } else {
            std::fs::remove_file(&c).map_err(io_err(&c))?;
        }
    }
    let path = match path {
        Some(c) => c,
        None => match (p.origin, &opts.source) {
            (Origin::Fixture, _) => {
                let (fname, bytes) = fixture::debs()?
                    .into_iter()
                    .find(|(f, _)| f.starts_with(&format!("{}_", p.name)))
                    .ok_or_else(|| Error::Other(format!("no fixture package {}", p.name)))?;
                let dest = debs.join(fname);
                write_atomic(&dest, &bytes)?;
                dest
            }
            (Origin::Debian, Source::Apt) => {
                let tmp = debs.join(format!(".partial-{}", std::process::id()));
                let got = apt_download(p.name, (!opts.any_version).then_some(p.version), &tmp).and_then(|got| {
                    let dest = debs.join(got.file_name().expect("a file"));
                    std::fs::rename(&got, &dest).map_err(io_err(&dest))?;
                    Ok(dest)
                });
                std::fs::remove_dir_all(&tmp).ok();
                got?
            }
            (Origin::Debian, Source::Dir(d)) => {
                let src = find_deb(d, p, opts.any_version)?.ok_or_else(|| {
                    Error::Other(format!(
                        "{}: no {}_{}_*.deb (with --any-version: any {}_*.deb); download it with `apt-get download {}={}` or from packages.debian.org",
                        d.display(),
                        p.name,
                        p.version,
                        p.name,
                        p.name,
                        p.version
                    ))
                })?;
                let dest = debs.join(src.file_name().expect("a file"));
                std::fs::copy(&src, &dest).map_err(io_err(&dest))?;
                dest
            }
        },
    };
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    verify(&bytes, &path)?;
    let fname = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
    let version = deb::control_field(&bytes, &fname, "Version")?;
    if !opts.any_version && version != p.version {
        return Err(Error::Data(format!(
            "{}: package version {version}, expected {}; pass --any-version to use it anyway",
            path.display(),
            p.version
        )));
    }
    let rec = PackageRecord {
        name: p.name.to_string(),
        version,
        sha256: sha256_hex(&bytes),
        file: format!("debs/{fname}"),
        bytes: bytes.len(),
        modules: vec![],
    };
    Ok((bytes, rec, cached))
}

/// Text derived from packages: the split documents and their records.
fn derive(spec: &CorpusSpec, packages: &mut [PackageRecord], debs: &[Vec<u8>], quiet: bool) -> Result<Vec<Document>> {
    let pb = spinner(quiet, "deriving text".into());
    let mut docs = vec![];
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for (rec, bytes) in packages.iter_mut().zip(debs) {
        pb.set_message(format!("deriving text: {}", rec.name));
        for (mrec, mdocs) in read_package(bytes, &rec.file)? {
            for (key, text) in mdocs {
                let base = format!("{}/{key}", mrec.name);
                let n = ids.entry(base.clone()).or_insert(0);
                *n += 1;
                let id = if *n == 1 { base } else { format!("{base}~{n}") };
                docs.push(Document {
                    id,
                    module: mrec.name.clone(),
                    split: split_of(&key, spec.valid_permille),
                    key,
                    text,
                });
            }
            rec.modules.push(mrec);
        }
    }
    pb.finish_with_message(format!("derived {} documents", docs.len()));
    Ok(docs)
}

fn count(docs: &[Document], s: Split) -> SplitCount {
    let mine: Vec<&Document> = docs.iter().filter(|d| d.split == s).collect();
    let keys: std::collections::BTreeSet<&str> = mine.iter().map(|d| d.key.as_str()).collect();
    SplitCount { documents: mine.len(), keys: keys.len(), chars: mine.iter().map(|d| d.text.chars().count()).sum() }
}

/// Derives the documents and their split from the packages, checks the pinned text hash,
/// and writes `documents.jsonl` and `corpus.json` (step 2 of [`prepare`]).
fn derive_and_write(
    spec: &CorpusSpec,
    opts: &PrepareOptions,
    dir: &Path,
    packages: &mut [PackageRecord],
    debs: &[Vec<u8>],
    t: Instant,
) -> Result<CorpusManifest> {
    let docs = derive(spec, packages, debs, opts.quiet)?;
    let (train, valid) = (count(&docs, Split::Train), count(&docs, Split::Valid));
    if train.documents == 0 || valid.documents == 0 {
        return Err(Error::Data(format!(
            "corpus {}: the split left {} training and {} validation documents; both must be non-empty (valid_permille = {})",
            spec.name, train.documents, valid.documents, spec.valid_permille
        )));
    }
    let mut jsonl = String::new();
    for d in &docs {
        jsonl += &serde_json::to_string(d).expect("serialisable");
        jsonl.push('\n');
    }
    let text_sha256 = sha256_hex(jsonl.as_bytes());
    let pinned_inputs = !opts.any_version && spec.packages.iter().all(|p| p.sha256.is_some());
    if let (Some(want), true) = (spec.text_sha256, pinned_inputs) {
        if want != text_sha256 {
            return Err(Error::Data(format!(
                "corpus {}: the text derived from the pinned packages has SHA-256 {text_sha256}, not the pinned {want}: the derivation code changed. If that is intended, update `text_sha256` of {} in crates/zoology/src/text/corpus.rs",
                spec.name, spec.name
            )));
        }
    }
    write_atomic(&dir.join("documents.jsonl"), jsonl.as_bytes())?;
    let m = CorpusManifest {
        format: CORPUS_FORMAT,
        corpus: spec.name.to_string(),
        about: spec.about.to_string(),
        packages: packages.to_vec(),
        split_rule: "by chapter key across all modules: sha256(\"zoology-rs/split/v1/\" + key), first 8 bytes little-endian, mod 1000 < valid_permille → valid".into(),
        valid_permille: spec.valid_permille,
        train,
        valid,
        text_file: "documents.jsonl".into(),
        text_sha256,
        derive_s: t.elapsed().as_secs_f64(),
        created_by: format!("zoology-rs {}", env!("CARGO_PKG_VERSION")),
    };
    write_atomic(&dir.join("corpus.json"), serde_json::to_string_pretty(&m).expect("serialisable").as_bytes())?;
    Ok(m)
}

/// Obtains the packages (cached after the first time), derives the documents and the split
/// (skipped when the cache verifies), and tokenizes with each requested tokenizer (likewise).
/// Everything lands in `<root>/<corpus>/`; nothing is written elsewhere.
pub fn prepare(spec: &CorpusSpec, opts: &PrepareOptions) -> Result<PrepareReport> {
    let dir = opts.root.join(spec.name);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut steps = vec![];

    // 1. packages
    let t = Instant::now();
    let (mut debs, mut packages, mut all_cached) = (vec![], vec![], true);
    for p in spec.packages {
        let sp = spinner(opts.quiet, format!("obtaining {} {}", p.name, p.version));
        let (bytes, rec, cached) = obtain(p, &dir, opts)?;
        sp.finish_with_message(format!(
            "{} {}: {:.1} MB, {}, sha256 {}",
            rec.name,
            rec.version,
            rec.bytes as f64 / 1e6,
            if cached { "cached" } else { "fetched" },
            short(&rec.sha256)
        ));
        all_cached &= cached;
        debs.push(bytes);
        packages.push(rec);
    }
    steps.push(StepTime { step: "packages".into(), seconds: t.elapsed().as_secs_f64(), cached: all_cached });

    // 2. text
    let t = Instant::now();
    let same_inputs = |m: &CorpusManifest| {
        m.valid_permille == spec.valid_permille
            && m.packages.iter().map(|p| (&p.name, &p.sha256)).eq(packages.iter().map(|p| (&p.name, &p.sha256)))
    };
    let existing = if opts.force { None } else { CorpusManifest::load_verified(&dir).ok().filter(same_inputs) };
    let (corpus, docs_cached) = match existing {
        Some(m) => (m, true),
        None => (derive_and_write(spec, opts, &dir, &mut packages, &debs, t)?, false),
    };
    steps.push(StepTime { step: "text".into(), seconds: t.elapsed().as_secs_f64(), cached: docs_cached });

    // 3. tokens
    let mut datasets = vec![];
    let mut docs: Option<Vec<Document>> = None;
    for spec_t in &opts.tokenizers {
        let t = Instant::now();
        let name = spec_t.name();
        if !opts.force {
            if let Ok(ds) = dataset::TokenDataset::open(&dir, &name) {
                datasets.push(ds.manifest);
                steps.push(StepTime {
                    step: format!("tokens {name}"),
                    seconds: t.elapsed().as_secs_f64(),
                    cached: true,
                });
                continue;
            }
        }
        if docs.is_none() {
            docs = Some(load_documents(&dir)?.1);
        }
        let m = dataset::tokenize(
            &corpus.corpus,
            &corpus.text_sha256,
            docs.as_ref().expect("loaded"),
            *spec_t,
            &dir.join(&name),
            opts.quiet,
        )?;
        datasets.push(m);
        steps.push(StepTime { step: format!("tokens {name}"), seconds: t.elapsed().as_secs_f64(), cached: false });
    }
    Ok(PrepareReport { dir, corpus, datasets, steps })
}
