//! The large fuzz campaign (ignored; run it by hand, it takes a while):
//!
//! ```sh
//! ZOOLOGY_FUZZ_N=3000 ZOOLOGY_FUZZ_TRAINS=300 scripts/with-torch cargo test --release \
//!     -p zoology-cli --test fuzz_campaign -- --ignored --nocapture
//! ```
//!
//! Every mutated config ([`zoology::config::fuzz::Fuzzer`]) goes through `Sweep::parse` (what
//! `zoology sweep plan` runs) in this process, a sample of them through the `zoology sweep plan`
//! binary, and accepted ones, shrunk to an epoch of one or two steps, through `zoology train`.
//! Outcomes: a named config error, a run that finishes (done or diverged) or fails with a
//! recorded reason; anything else (a panic, an abort, a hang past the timeout) is reported and
//! fails the test. `ZOOLOGY_FUZZ_ALL_MIXERS=1` mutates every registered mixer's options (to
//! find the mixers whose validate still lacks bounds).
//!
//! The mutations include sizes beyond this machine's memory (`config::fuzz::big_sizes`): those
//! the estimate refuses must be refused by `train` with a named error before anything is
//! written. Then `ZOOLOGY_FUZZ_SWEEPS` (100) sweep files with grids from one run to far beyond
//! the limit go through `sweep plan` (a named error or a plan, quickly), and every numeric flag of
//! every verb (the binary lists them: `ZOOLOGY_LIST_NUMERIC_FLAGS=1`), and the `data` verb's own
//! numeric options, get out-of-range values: each must exit 1 naming the flag, write nothing and
//! not panic.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zoology::config::fuzz::{fuzzed_mixers, make_short, Fuzzer};

/// The binary under test (`ZOOLOGY_FUZZ_EXE` overrides it, e.g. with a copy that a rebuild
/// during a long campaign cannot replace).
fn exe() -> String {
    std::env::var("ZOOLOGY_FUZZ_EXE").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zoology").to_string())
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// Runs a command with a timeout: (exit code or signal, stdout+stderr, timed out).
fn run(mut cmd: Command, timeout: Duration) -> (String, String, bool) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
            use std::os::unix::process::ExitStatusExt;
            let how = st
                .code()
                .map(|c| format!("exit {c}"))
                .unwrap_or_else(|| format!("signal {}", st.signal().unwrap_or(0)));
            return (how, text, false);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            return ("timeout".into(), String::from_utf8_lossy(&o.stderr).to_string(), true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore]
fn fuzz_campaign() {
    let n = env_usize("ZOOLOGY_FUZZ_N", 3000);
    let n_cli = env_usize("ZOOLOGY_FUZZ_CLI", 200);
    let n_train = env_usize("ZOOLOGY_FUZZ_TRAINS", 300);
    let seed = env_usize("ZOOLOGY_FUZZ_SEED", 1) as u64;
    let mixers =
        if std::env::var("ZOOLOGY_FUZZ_ALL_MIXERS").is_ok() { zoology::mixers::names() } else { fuzzed_mixers() };
    println!("fuzz campaign: {n} configs (seed {seed}), {n_cli} through the binary's `sweep plan`, up to {n_train} short trains; mixers {mixers:?}");
    let dir = std::env::temp_dir().join(format!("zoology-fuzz-campaign-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = Fuzzer::with_mixers(seed, mixers);
    let (mut named, mut accepted, mut bad) = (0usize, vec![], vec![]);
    let mut slowest = (0.0f64, String::new());
    for i in 0..n {
        let (table, what) = f.next_config();
        let text = toml::to_string(&table).unwrap_or_else(|_| String::new());
        let t0 = Instant::now();
        let r = std::panic::catch_unwind(|| zoology::sweep::Sweep::parse(&text, &format!("fuzz{i}.toml"), "fuzz"));
        let dt = t0.elapsed().as_secs_f64();
        if dt > slowest.0 {
            slowest = (dt, format!("{what:?}"));
        }
        if dt > 5.0 {
            bad.push(format!("config {i} {what:?}: validation took {dt:.1} s (a hang)"));
        }
        match r {
            Ok(Ok(s)) => accepted.push((i, what.clone(), text.clone(), s)),
            Ok(Err(e)) => {
                let m = e.to_string();
                if !m.contains("config: `") && !m.contains("not valid TOML") {
                    bad.push(format!("config {i} {what:?}: an error that names no field: {m}"));
                }
                named += 1;
            }
            Err(_) => bad.push(format!("config {i} {what:?}: PANIC in validation\n{text}")),
        }
        if i < n_cli {
            let p = dir.join(format!("c{i}.toml"));
            std::fs::write(&p, &text).unwrap();
            let mut cmd = Command::new(exe());
            cmd.args(["sweep", "plan"]).arg(&p);
            let (how, out, _) = run(cmd, Duration::from_secs(60));
            let ok = how == "exit 0" || (how == "exit 1" && out.contains("error:") && !out.contains("panicked"));
            if !ok {
                bad.push(format!("`sweep plan` on config {i} {what:?}: {how}\n{out}"));
            }
        }
    }
    println!(
        "validation: {n} configs, {named} named errors, {} accepted, slowest {:.3} s ({})",
        accepted.len(),
        slowest.0,
        slowest.1
    );
    let (mut trained, mut done, mut diverged, mut failed, mut skipped) = (0, 0, 0, 0, 0);
    for (i, what, _, s) in accepted.iter() {
        if trained >= n_train {
            break;
        }
        let mut cfg = s.runs[0].config.clone();
        make_short(&mut cfg);
        let too_big = zoology::config::mem_total_bytes().is_some_and(|t| cfg.memory_estimate().bytes > t);
        if cfg.memory_estimate().bytes > 2e9 && !too_big {
            skipped += 1;
            continue;
        }
        let p = dir.join(format!("t{i}.toml"));
        std::fs::write(&p, cfg.to_toml()).unwrap();
        let out = dir.join(format!("run{i}"));
        let mut cmd = Command::new(exe());
        cmd.args(["train", "-q", "--out"]).arg(&out).arg(&p);
        let (how, text, timed_out) = run(cmd, Duration::from_secs(300));
        trained += 1;
        let status = std::fs::read_to_string(out.join("summary.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|v| v["status"].as_str().unwrap_or("").to_string());
        match (how.as_str(), status.as_deref()) {
            ("exit 0", Some("done")) => done += 1,
            ("exit 2", Some("diverged")) => diverged += 1,
            ("exit 1", None) if out.join("failed.json").exists() && !text.contains("panicked") => {
                failed += 1;
                println!("config {i} {what:?} failed with a recorded reason: {}", text.lines().last().unwrap_or(""));
            }
            ("exit 1", None) if too_big => {
                // beyond this machine: refused before anything is written
                if !text.contains("config: `") || out.exists() {
                    bad.push(format!(
                        "config {i} {what:?} is beyond this machine but was not refused cleanly: exists {}\n{}",
                        out.exists(),
                        tail(&text)
                    ));
                }
                failed += 1;
            }
            ("exit 1", None) if text.contains("config: `") && !out.join("checkpoint.safetensors").exists() => {
                failed += 1;
                println!("config {i} {what:?} refused: {}", text.lines().last().unwrap_or(""));
            }
            _ => bad.push(format!(
                "train of config {i} {what:?}: {how}{} status {status:?}\n{}\n{}",
                if timed_out { " (HANG)" } else { "" },
                cfg.to_toml(),
                tail(&text)
            )),
        }
        let _ = std::fs::remove_dir_all(&out);
    }
    println!("training: {trained} short runs: {done} done, {diverged} diverged, {failed} failed or refused with a reason, {skipped} skipped as too large for this check");
    sweeps_through_plan(&mut f, &dir, env_usize("ZOOLOGY_FUZZ_SWEEPS", 100), &mut bad);
    numeric_flags_out_of_range(&dir, &mut bad);
    let _ = std::fs::remove_dir_all(&dir);
    for b in &bad {
        println!("BAD: {b}\n");
    }
    assert!(bad.is_empty(), "{} configs panicked, aborted, hung or gave unnamed errors (listed above)", bad.len());
}

fn tail(t: &str) -> String {
    let l: Vec<&str> = t.lines().collect();
    l[l.len().saturating_sub(15)..].join("\n")
}

/// Grids from one run to far beyond the limit through the binary's `sweep plan`: a plan or a
/// named error, quickly; a grid above the limit is refused with its count.
fn sweeps_through_plan(f: &mut Fuzzer, dir: &std::path::Path, n: usize, bad: &mut Vec<String>) {
    let max = zoology::limits::MAX_SWEEP_RUNS as u128;
    let (mut planned, mut refused, mut slowest) = (0, 0, 0.0f64);
    for i in 0..n {
        let (text, what, count) = f.next_sweep();
        let p = dir.join(format!("g{i}.toml"));
        std::fs::write(&p, &text).unwrap();
        let mut cmd = Command::new(exe());
        cmd.args(["sweep", "plan"]).arg(&p).current_dir(dir);
        let t0 = Instant::now();
        let (how, out, timed_out) = run(cmd, Duration::from_secs(300));
        let dt = t0.elapsed().as_secs_f64();
        slowest = slowest.max(dt);
        match how.as_str() {
            "exit 0" if count <= max => planned += 1,
            "exit 1" if out.contains("error:") && !out.contains("panicked") => {
                if count > max && !out.contains("sweep.name") && !out.contains("more than the limit") {
                    bad.push(format!("sweep {i} ({what}, {count} runs): refused without its count: {}", tail(&out)));
                }
                refused += 1;
            }
            _ => bad.push(format!(
                "sweep plan of grid {i} ({what}, {count} runs): {how}{}\n{}",
                if timed_out { " (HANG)" } else { "" },
                tail(&out)
            )),
        }
    }
    println!("sweeps: {n} grids through `sweep plan`: {planned} planned, {refused} refused with a named error, slowest {slowest:.1} s");
}

/// Every numeric flag of every verb (and the `data` verb's own numeric options) with values out
/// of any range: exit 1 naming the flag, no panic, nothing written in the working directory.
fn numeric_flags_out_of_range(dir: &std::path::Path, bad: &mut Vec<String>) {
    let o = Command::new(exe()).env("ZOOLOGY_LIST_NUMERIC_FLAGS", "1").output().unwrap();
    let list = String::from_utf8_lossy(&o.stdout).to_string();
    let mut cases: Vec<(Vec<String>, String)> = vec![];
    for line in list.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let (verb, flag, positionals) = (cols[0], cols[1], cols.get(3).copied().unwrap_or(""));
        if format!("{verb} {flag}") == "construct --seed" {
            continue; // any 64-bit seed is valid
        }
        let mut args: Vec<String> = verb.split_whitespace().map(str::to_string).collect();
        args.extend(positionals.split_whitespace().map(str::to_string));
        cases.push((args, flag.to_string()));
    }
    for (flag, rest) in
        [("--vocab-size", "data mqar"), ("--seed", "data mqar"), ("--show", "data mqar"), ("--reps", "bench data mqar")]
    {
        cases.push((rest.split_whitespace().map(str::to_string).collect(), flag.to_string()));
    }
    let cwd = dir.join("flags-cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut tried = 0;
    for (args, flag) in &cases {
        for v in ["18446744073709551616", "-1", "-9223372036854775809", "nan", "inf", "1e400"] {
            let mut cmd = Command::new(exe());
            cmd.args(args).arg(format!("{flag}={v}")).current_dir(&cwd);
            let (how, out, timed_out) = run(cmd, Duration::from_secs(120));
            tried += 1;
            if how != "exit 1" || !out.contains(flag.as_str()) || out.contains("panicked") || timed_out {
                bad.push(format!("`zoology {} {flag}={v}`: {how}\n{}", args.join(" "), tail(&out)));
            }
        }
    }
    let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    if !left.is_empty() {
        bad.push(format!("refused flags wrote into the working directory: {left:?}"));
    }
    println!("numeric flags: {} flags, {tried} out-of-range values through the binary", cases.len());
}
