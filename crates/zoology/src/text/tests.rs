//! The corpus path on the fixture: SWORD reader, segmentation, split, prepare, checksums.

use super::corpus::{
    self, segment, split_bucket, split_of, CorpusSpec, Origin, PackageSpec, PrepareOptions, Source, Split,
};
use super::dataset::TokenDataset;
use super::fixture::{self, ModuleBuilder};
use super::sword::{ModuleConf, SwordModule};
use super::tokenizer::TokenizerSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn read(files: Vec<(String, Vec<u8>)>) -> SwordModule {
    let map: BTreeMap<String, Vec<u8>> = files.into_iter().collect();
    let conf_path = map.keys().find(|k| k.ends_with(".conf")).unwrap().clone();
    let conf = ModuleConf::parse(&String::from_utf8_lossy(&map[&conf_path]), &conf_path).unwrap();
    SwordModule::read(conf, |p| map.get(p).map(|v| v.as_slice())).unwrap()
}

fn docs_of(m: &SwordModule) -> BTreeMap<String, String> {
    segment(m).unwrap().into_iter().collect()
}

#[test]
fn fixture_bible_reads_into_chapter_documents() {
    let m = read(fixture::bible_module());
    assert_eq!(m.conf.name, "FixtureBible");
    assert_eq!(m.conf.all["About"], "A long value continued on a second line");
    assert_eq!(m.linked_slots, 0);
    let docs = docs_of(&m);
    assert_eq!(
        docs.keys().cloned().collect::<Vec<_>>(),
        ["Harb.0", "Harb.1", "Harb.2", "Harb.3", "Lamp.0", "Lamp.1", "Lamp.2", "Lamp.3"]
    );
    assert_eq!(docs["Lamp.0"], "The Book of the Lighthouse");
    let l1 = &docs["Lamp.1"];
    assert!(
        l1.starts_with(
            "In the first year of the harbour, Mara Quill kept the lighthouse on the northern cape. Every evening"
        ),
        "{l1}"
    );
    assert!(!l1.contains('<') && !l1.contains("stair") && !l1.contains("1:2"), "markup and notes are gone: {l1}");
    assert!(l1.contains("not in rain. ¶\nShe wrote"), "transChange kept, paragraph milestone breaks the line: {l1}");
    assert!(docs["Lamp.2"].contains("said, \"Keeper, we owe you our lives.\""), "entities decoded: {}", docs["Lamp.2"]);
}

#[test]
fn fixture_commentary_dedups_linked_entries_and_reads_12_byte_index() {
    let m = read(fixture::notes_module());
    assert_eq!(m.conf.mod_drv, "zCom4");
    // one comment per chapter, linked to each further verse of the chapter: (4+5+3) + (3+4+2)
    assert_eq!(m.linked_slots, 21);
    let docs = docs_of(&m);
    assert_eq!(docs["Lamp.0"], "The Book of the Lighthouse\nChapter 1 The beginning\nChapter 3 The end");
    assert!(docs["Harb.2"].starts_with("Verses 1-5\nThe lantern of the Heron"), "{}", docs["Harb.2"]);
    assert_eq!(docs["Harb.2"].matches("The lantern").count(), 1, "linked entry read once");
}

#[test]
fn index_record_size_falls_back_when_the_driver_lies() {
    // a zCom4 conf (12-byte records declared) over a 10-byte index, as Debian's sword-comm-mhcc
    let mut b = ModuleBuilder::new(10, 'b');
    b.push_empty();
    b.push("<chapter osisID=\"X.1\" sID=\"X.1\"/>alpha beta");
    b.push("gamma");
    b.push_empty();
    b.push("delta");
    let mut files = b.files("modules/comments/zcom/m", "ot");
    files.push((
        "mods.d/m.conf".into(),
        b"[M]\nDataPath=./modules/comments/zcom/m/\nModDrv=zCom4\nSourceType=OSIS\nEncoding=UTF-8\nCompressType=ZIP\n"
            .to_vec(),
    ));
    let m = read(files);
    assert_eq!(m.entries.len(), 3);
    assert_eq!(docs_of(&m)["X.1"], "alpha beta gamma delta");
}

#[test]
fn reader_errors_name_the_file_and_the_problem() {
    let mut b = ModuleBuilder::new(10, 'b');
    b.push("abc");
    let mut files: BTreeMap<String, Vec<u8>> = b.files("m", "ot").into_iter().collect();
    let conf = |drv: &str, comp: &str| {
        ModuleConf::parse(&format!("[M]\nDataPath=m\nModDrv={drv}\nCompressType={comp}\nEncoding=UTF-8\n"), "m.conf")
            .unwrap()
    };
    let err = |c: ModuleConf, f: &BTreeMap<String, Vec<u8>>| {
        SwordModule::read(c, |p| f.get(p).map(|v| v.as_slice())).unwrap_err().to_string()
    };
    assert!(err(conf("RawText", "ZIP"), &files).contains("ModDrv=RawText"));
    assert!(err(conf("zText", "LZSS"), &files).contains("CompressType=LZSS"));
    files.get_mut("m/ot.bzv").unwrap().truncate(7);
    let e = err(conf("zText", "ZIP"), &files);
    assert!(e.contains("m/ot.bzv") && e.contains("not a multiple"), "{e}");
    files.remove("m/ot.bzz");
    assert!(err(conf("zText", "ZIP"), &files).contains("m/ot.bzz is missing"));
    assert!(ModuleConf::parse("DataPath=x\n", "y.conf").unwrap_err().to_string().contains("y.conf"));
}

#[test]
fn split_is_by_key_and_stable() {
    // pinned values: changing the rule changes every prepared corpus
    let keys = ["Gen.1", "Gen.2", "Ps.23", "Matt.5", "front"];
    assert_eq!(keys.map(split_bucket), [582, 329, 210, 879, 708], "split rule changed");
    let sides: Vec<Split> = keys.iter().map(|k| split_of(k, 500)).collect();
    assert_eq!(sides, vec![Split::Train, Split::Valid, Split::Valid, Split::Train, Split::Train]);
    assert!(keys.iter().all(|k| split_of(k, 0) == Split::Train && split_of(k, 1000) == Split::Valid));
    // about the requested share
    let valid = (0..4000).filter(|i| split_of(&format!("Book.{i}"), 50) == Split::Valid).count();
    assert!((150..250).contains(&valid), "{valid} of 4000 at 5%");
}

fn temp_root(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zoology-corpus-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    d
}

fn opts(root: &PathBuf, source: Source) -> PrepareOptions {
    PrepareOptions {
        root: root.clone(),
        source,
        any_version: false,
        tokenizers: vec![TokenizerSpec::Bpe { vocab_size: 300 }],
        force: false,
        quiet: true,
    }
}

#[test]
fn prepare_fixture_end_to_end_with_verified_cache() {
    let root = temp_root("e2e");
    let spec = corpus::corpus_spec("fixture", "--corpus").unwrap();
    let r = corpus::prepare(&spec, &opts(&root, Source::Apt)).unwrap();
    assert!(r.steps.iter().all(|s| !s.cached));
    let (m, docs) = corpus::load_documents(&r.dir).unwrap();
    assert_eq!(m.packages.len(), 2);
    assert_eq!(m.packages[1].modules[0].linked_slots, 21);
    // every key is on one side for both modules, and both sides are used
    let mut side: BTreeMap<&str, BTreeSet<Split>> = BTreeMap::new();
    for d in &docs {
        side.entry(d.key.as_str()).or_default().insert(d.split);
    }
    assert!(side.values().all(|s| s.len() == 1));
    assert!(m.train.documents > 0 && m.valid.documents > 0, "{:?} {:?}", m.train, m.valid);
    assert_eq!(m.train.documents + m.valid.documents, docs.len());
    assert_eq!(docs.iter().filter(|d| d.module == "FixtureNotes").count(), 8);

    let ds = TokenDataset::open(&r.dir, "bpe300").unwrap();
    assert_eq!(ds.tokenizer.vocab_size(), 300);
    let eot = ds.tokenizer.eot();
    for split in [Split::Train, Split::Valid] {
        let toks = ds.tokens(split);
        let f = ds.manifest.split(split);
        assert_eq!(toks.iter().filter(|&&t| t == eot).count(), f.documents, "one end-of-text per document");
        assert_eq!(*toks.last().unwrap(), eot);
        // decoding the stream gives back the documents
        let text = ds.tokenizer.decode(toks).unwrap();
        let want: String =
            docs.iter().filter(|d| d.split == split).map(|d| format!("{}<|endoftext|>", d.text)).collect();
        assert_eq!(text, want);
    }
    let w = ds.windows(Split::Train, 16).unwrap();
    assert_eq!(w.n, (ds.tokens(Split::Train).len() - 1) / 16);
    assert_eq!(w.example(1).0[0], w.example(0).1[15]);

    // a second run reuses everything
    let again = corpus::prepare(&spec, &opts(&root, Source::Apt)).unwrap();
    assert!(again.steps.iter().all(|s| s.cached), "{:?}", again.steps);
    assert_eq!(again.corpus.text_sha256, m.text_sha256);

    // tampering is caught with the fix in the message
    let tokens = r.dir.join("bpe300/train.bin");
    let mut b = std::fs::read(&tokens).unwrap();
    b[0] ^= 1;
    std::fs::write(&tokens, &b).unwrap();
    let e = TokenDataset::open(&r.dir, "bpe300").unwrap_err().to_string();
    assert!(e.contains("train.bin") && e.contains("--force"), "{e}");
    let text = r.dir.join("documents.jsonl");
    let t = std::fs::read_to_string(&text).unwrap().replacen("Mara", "Mira", 1);
    std::fs::write(&text, t).unwrap();
    let e = TokenDataset::open(&r.dir, "bpe300").unwrap_err().to_string();
    assert!(e.contains("documents.jsonl") && e.contains("checksum"), "{e}");
    // prepare repairs both
    let fixed = corpus::prepare(&spec, &opts(&root, Source::Apt)).unwrap();
    assert_eq!(fixed.corpus.text_sha256, m.text_sha256);
    TokenDataset::open(&r.dir, "bpe300").unwrap();
    assert!(TokenDataset::open(&r.dir, "bpe512").unwrap_err().to_string().contains("--tokenizer bpe512"));
    std::fs::remove_dir_all(&root).ok();
}

const LOCAL: &[PackageSpec] = &[
    PackageSpec { name: "zoology-fixture-bible", version: "1.0", sha256: None, origin: Origin::Debian },
    PackageSpec { name: "zoology-fixture-notes", version: "2.0", sha256: None, origin: Origin::Debian },
];

#[test]
fn debian_packages_from_a_directory_are_version_checked() {
    let root = temp_root("dir");
    let debs = root.join("incoming");
    std::fs::create_dir_all(&debs).unwrap();
    for (name, bytes) in fixture::debs().unwrap() {
        std::fs::write(debs.join(name), bytes).unwrap();
    }
    let spec = CorpusSpec { name: "local", about: "test", packages: LOCAL, valid_permille: 300, text_sha256: None };
    let fixture_sha = corpus::prepare(
        &corpus::corpus_spec("fixture", "c").unwrap(),
        &PrepareOptions { tokenizers: vec![], ..opts(&root, Source::Apt) },
    )
    .unwrap()
    .corpus
    .text_sha256;
    let r = corpus::prepare(&spec, &PrepareOptions { tokenizers: vec![], ..opts(&root, Source::Dir(debs.clone())) })
        .unwrap();
    assert_eq!(r.corpus.text_sha256, fixture_sha, "same packages, same text");
    assert_eq!(r.corpus.packages[0].file, "debs/zoology-fixture-bible_1.0_all.deb");

    // a package whose version is not the pinned one is refused unless --any-version
    let root2 = temp_root("dir2");
    let odd = root2.join("incoming");
    std::fs::create_dir_all(&odd).unwrap();
    let bible = std::fs::read(debs.join("zoology-fixture-bible_1.0_all.deb")).unwrap();
    std::fs::write(odd.join("zoology-fixture-bible_1.0_all.deb"), &bible).unwrap();
    const WRONG: &[PackageSpec] =
        &[PackageSpec { name: "zoology-fixture-bible", version: "1.1", sha256: None, origin: Origin::Debian }];
    let spec = CorpusSpec { name: "wrong", about: "test", packages: WRONG, valid_permille: 300, text_sha256: None };
    let e = corpus::prepare(&spec, &PrepareOptions { tokenizers: vec![], ..opts(&root2, Source::Dir(odd.clone())) })
        .unwrap_err()
        .to_string();
    assert!(e.contains("no zoology-fixture-bible_1.1_*.deb"), "{e}");
    let r = corpus::prepare(
        &spec,
        &PrepareOptions { tokenizers: vec![], any_version: true, ..opts(&root2, Source::Dir(odd)) },
    )
    .unwrap();
    assert_eq!(r.corpus.packages[0].version, "1.0", "the version actually used is recorded");
    // a pinned checksum that does not match is refused
    const PINNED: &[PackageSpec] =
        &[PackageSpec { name: "zoology-fixture-bible", version: "1.0", sha256: Some("00"), origin: Origin::Debian }];
    let spec = CorpusSpec { name: "pinned", about: "test", packages: PINNED, valid_permille: 300, text_sha256: None };
    let e = corpus::prepare(&spec, &PrepareOptions { tokenizers: vec![], ..opts(&root, Source::Dir(debs)) })
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not the pinned 00"), "{e}");
    assert!(corpus::corpus_spec("pile", "--corpus").unwrap_err().to_string().contains("--corpus"));
    std::fs::remove_dir_all(&root).ok();
    std::fs::remove_dir_all(&root2).ok();
}
