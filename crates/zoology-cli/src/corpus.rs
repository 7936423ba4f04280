//! `zoology corpus fetch|info`: obtain, derive and tokenize a real-text corpus into the cache;
//! describe a prepared one and measure its AR-hit statistics.

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use zoology::text::arhits::{power_law_pmf, slice_counts, BigramCounts, FreqBuckets, GapHistogram};
use zoology::text::corpus::{self, PrepareOptions, Source, Split};
use zoology::text::dataset::TokenDataset;
use zoology::text::tokenizer::TokenizerSpec;

#[derive(Subcommand)]
pub enum CorpusCmd {
    /// Obtain the corpus's Debian packages (apt-get download, or --debs DIR), derive its text and
    /// split, and tokenize it, into the cache. Steps whose cached result verifies are skipped.
    Fetch(FetchArgs),
    /// Describe a prepared corpus: packages, split, tokenizers, and (with a tokenizer) the share
    /// of AR-hit tokens and the distribution of their distances against MQAR's power law.
    Info(InfoArgs),
}

#[derive(Args)]
pub struct Common {
    /// Corpus name: sword-en (Debian SWORD packages) or fixture (built in, offline).
    #[arg(long, default_value = "sword-en")]
    corpus: String,
    /// Cache root (default: $ZOOLOGY_CORPUS_DIR, else ${XDG_CACHE_HOME:-~/.cache}/zoology-rs/corpus).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct FetchArgs {
    #[command(flatten)]
    common: Common,
    /// Tokenizers to build: bpe<vocab> (trained on the training split) and/or r50k (GPT-2); comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "bpe4096")]
    tokenizer: Vec<String>,
    /// Take the .deb files from this directory instead of apt-get download.
    #[arg(long, value_name = "DIR")]
    debs: Option<PathBuf>,
    /// Accept package versions other than the pinned ones (the derived text then differs).
    #[arg(long)]
    any_version: bool,
    /// Derive and tokenize again even if the cache verifies.
    #[arg(long)]
    force: bool,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    common: Common,
    /// Measure AR hits with this tokenizer's tokens (default: the first one prepared).
    #[arg(long)]
    tokenizer: Option<String>,
    /// Window lengths for the AR-hit statistics.
    #[arg(long, value_delimiter = ',', default_value = "512,2048", value_parser = crate::flags::int(2usize, zoology::limits::MAX_SEQ_LEN))]
    windows: Vec<usize>,
    /// Split to measure.
    #[arg(long, default_value = "train")]
    split: String,
    /// Write the gap-distribution plot (PNG + SVG) into this directory.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// Number of quantile buckets of training-bigram frequency.
    #[arg(long, default_value_t = 5, value_parser = crate::flags::int(1usize, 1000))]
    buckets: usize,
    /// MQAR's power_a for the comparison.
    #[arg(long, default_value_t = 0.01, value_parser = crate::flags::real(0.0, 1.0))]
    power_a: f64,
}

fn lib<T>(r: zoology::Result<T>) -> Result<T> {
    r.map_err(|e| anyhow!(e.to_string()))
}

fn root(c: &Common) -> Result<PathBuf> {
    match &c.dir {
        Some(d) => Ok(d.clone()),
        None => lib(corpus::default_corpus_root()),
    }
}

pub fn cmd_corpus(c: CorpusCmd) -> Result<()> {
    match c {
        CorpusCmd::Fetch(a) => fetch(a),
        CorpusCmd::Info(a) => info(a),
    }
}

fn fetch(a: FetchArgs) -> Result<()> {
    let spec = lib(corpus::corpus_spec(&a.common.corpus, "--corpus"))?;
    let tokenizers =
        a.tokenizer.iter().map(|t| lib(TokenizerSpec::parse(t, "--tokenizer"))).collect::<Result<Vec<_>>>()?;
    if let Some(d) = &a.debs {
        if !d.is_dir() {
            return Err(anyhow!("--debs {}: not a directory", d.display()));
        }
    }
    let opts = PrepareOptions {
        root: root(&a.common)?,
        source: a.debs.clone().map(Source::Dir).unwrap_or(Source::Apt),
        any_version: a.any_version,
        tokenizers,
        force: a.force,
        quiet: a.quiet,
    };
    eprintln!("corpus {} into {}", spec.name, opts.root.join(spec.name).display());
    let r = lib(corpus::prepare(&spec, &opts))?;
    for s in &r.steps {
        println!("  {:<16} {:>8.1} s{}", s.step, s.seconds, if s.cached { "  (cached, verified)" } else { "" });
    }
    print_summary(&r.corpus, &r.datasets);
    Ok(())
}

fn print_summary(m: &corpus::CorpusManifest, datasets: &[zoology::text::dataset::DatasetManifest]) {
    println!("corpus {}: {}", m.corpus, m.about);
    for p in &m.packages {
        for md in &p.modules {
            println!(
                "  {:<20} {:<10} {:<14} {:>6} documents {:>11} chars  ({}, {} entries, {} linked slots)",
                p.name, p.version, md.name, md.documents, md.chars, md.driver, md.entries, md.linked_slots
            );
        }
    }
    println!(
        "  split by chapter key ({}‰ validation): train {} documents / {} keys / {} chars; valid {} documents / {} keys / {} chars",
        m.valid_permille, m.train.documents, m.train.keys, m.train.chars, m.valid.documents, m.valid.keys, m.valid.chars
    );
    println!("  text sha256 {}", m.text_sha256);
    for d in datasets {
        println!(
            "  tokenizer {:<8} vocab {:>6}: train {} tokens, valid {} tokens, {:.2} chars/token (tokenizer {:.1} s, encoding {:.1} s)",
            d.tokenizer.name, d.tokenizer.vocab_size, d.train.tokens, d.valid.tokens, d.chars_per_token, d.train_tokenizer_s, d.encode_s
        );
    }
}

/// The AR-hit distance table per window length, beside MQAR's power law; returns the
/// histograms (for the plot).
fn print_gap_table(toks: &[u32], windows: &[usize], power_a: f64) -> Vec<GapHistogram> {
    println!(
        "  {:>5} {:>7} {:>8} {:>9} {:>6} {:>7} {:>8} {:>13} | {:>22}",
        "L",
        "windows",
        "AR hits",
        "first occ",
        "mode d",
        "median",
        "P(d≤16)",
        "tail β",
        format!("MQAR a={}: median P(d≤16)", power_a)
    );
    let mut hists = vec![];
    for &l in windows {
        let h = GapHistogram::from_stream(toks, l);
        if h.targets == 0 {
            println!("  {l:>5}: the split has fewer than {} tokens", l + 1);
            continue;
        }
        let law = power_law_pmf(power_a, l);
        let mut cum = 0.0;
        let law_median = law.iter().find(|p| {
            cum += p.1;
            cum >= 0.5
        });
        let law_cdf16: f64 = law.iter().take(16).map(|p| p.1).sum();
        println!(
            "  {:>5} {:>7} {:>7.1}% {:>8.1}% {:>6} {:>7} {:>8.3} {:>13} | {:>11} {:>10.3}",
            l,
            h.targets / l as u64,
            100.0 * h.ar_hit_share(),
            100.0 * h.first_occurrences as f64 / h.targets as f64,
            h.mode(),
            h.median(),
            h.cdf(16),
            h.fit_exponent(16, l / 2, true).map(|b| format!("{b:.2}")).unwrap_or_else(|| "–".into()),
            law_median.map(|p| p.0).unwrap_or(l),
            law_cdf16
        );
        hists.push(h);
    }
    println!(
        "  tail β: maximum-likelihood exponent of P(d) ∝ d^-β on 16 ≤ d ≤ L/2, counts corrected for the window edge; MQAR's law is β = 1 − a = {:.2}",
        1.0 - power_a
    );
    hists
}

/// How the AR hits of the split spread over training-bigram frequency, at window length `l0`.
fn print_frequency_table(ds: &TokenDataset, toks: &[u32], l0: usize, n_buckets: usize, split: Split) -> Result<()> {
    // how the AR hits of the split spread over training-bigram frequency
    let counts = BigramCounts::from_tokens(ds.tokens(Split::Train));
    let buckets = lib(FreqBuckets::quantiles(&counts, n_buckets))?;
    let share = buckets.train_share(&counts);
    let rep = lib(slice_counts(toks, l0, &counts, &buckets))?;
    println!(
        "\nBigram frequency buckets ({}; {} distinct training bigrams), {} split at L = {l0}:",
        buckets.scheme,
        counts.distinct(),
        split.name()
    );
    println!(
        "  {:>12} {:>14} {:>10} {:>10} {:>10} {:>9}",
        "count", "train share", "targets", "AR hits", "first occ", "AR hit %"
    );
    for (row, sh) in rep.by_frequency.iter().zip(&share) {
        let n = row.ar_hit.tokens + row.first_occurrence.tokens + row.other.tokens;
        println!(
            "  {:>12} {:>13.1}% {:>10} {:>10} {:>10} {:>8.1}%",
            row.bucket,
            100.0 * sh,
            n,
            row.ar_hit.tokens,
            row.first_occurrence.tokens,
            100.0 * row.ar_hit.tokens as f64 / n.max(1) as f64
        );
    }
    Ok(())
}

fn info(a: InfoArgs) -> Result<()> {
    let spec = lib(corpus::corpus_spec(&a.common.corpus, "--corpus"))?;
    let split = lib(Split::parse(&a.split, "--split"))?;
    if a.windows.is_empty() || a.windows.contains(&0) {
        return Err(anyhow!("--windows: give positive window lengths, e.g. 512,2048"));
    }
    let dir = root(&a.common)?.join(spec.name);
    let m = lib(corpus::CorpusManifest::load_verified(&dir))?;
    let mut datasets = vec![];
    let mut names = vec![];
    if let Ok(rd) = std::fs::read_dir(&dir) {
        let mut subdirs: Vec<PathBuf> =
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("dataset.json").exists()).collect();
        subdirs.sort();
        for p in subdirs {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            let text = std::fs::read_to_string(p.join("dataset.json"))?;
            if let Ok(d) = serde_json::from_str(&text) {
                datasets.push(d);
                names.push(name);
            }
        }
    }
    print_summary(&m, &datasets);
    let Some(tok) = a.tokenizer.clone().or_else(|| names.first().cloned()) else {
        println!("no tokenized data yet: `zoology corpus fetch --corpus {} --tokenizer bpe4096`", spec.name);
        return Ok(());
    };
    let ds = lib(TokenDataset::open(&dir, &tok))?;
    let toks = ds.tokens(split);
    println!("\nAR hits in the {} split ({} tokens, {tok}), windows packed as for training; d = distance back to the earlier occurrence:", split.name(), toks.len());
    let hists = print_gap_table(toks, &a.windows, a.power_a);
    print_frequency_table(&ds, toks, a.windows[0], a.buckets, split)?;
    if let Some(p) = &a.plot {
        let stem = p.join(format!("gaps-{}-{}-{}", spec.name, tok, split.name()));
        lib(zoology::analysis::arhits_plot::plot_gaps(&hists, a.power_a, &stem))?;
        println!("plot: {}", stem.with_extension("png").display());
    }
    Ok(())
}
