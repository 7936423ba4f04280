//! `zoology report` in a real browser: a small sweep is trained and reported, and the HTML page
//! is opened in headless Chromium (Debian's `chromium`; `.ci/run` installs it when missing). The
//! test fails on any console message or page error (a probe injected into a copy of the page
//! records `console.error`/`console.warn`, uncaught errors and failed resource loads), on an
//! image that does not load, on a plot that renders empty, and it saves a screenshot of the
//! unmodified page (`ZOOLOGY_REPORT_SCREENSHOT=PATH` copies it there; docs/results/
//! report-screenshot.png was made so). Without Chromium it fails, unless
//! `ZOOLOGY_SKIP_BROWSER=1` says to skip it.

mod common;
use common::tmpdir;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_zoology");

const SWEEP: &str = r#"
seed = 5
[data]
vocab_size = 64
batch_size = 16
[[data.train]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 64
[[data.test]]
task = "mqar"
seq_len = 16
num_kv_pairs = 2
num_examples = 32
[model]
d_model = 16
state_mixer = "identity"
max_position_embeddings = 16
mixer = { name = "attention" }
[train]
epochs = 2
lr = 3e-3
[sweep]
name = "browser"
"model.d_model" = [16, 32]
[sweep.mixers.attention]
mixer = { name = "attention" }
[sweep.mixers.base_conv]
mixer = { name = "base_conv", kernel_size = 3 }
"#;

/// Injected first in `<head>`: records console errors and warnings, uncaught errors and failed
/// resource loads (a capture listener on window sees an image's error event).
const PROBE_HEAD: &str = "<script>window.__probe={errors:[]};window.addEventListener('error',function(e){var t=e.target;window.__probe.errors.push(t&&t!==window&&(t.src||t.href)?('failed to load '+(t.src||t.href).slice(0,120)):String(e.message));},true);['error','warn'].forEach(function(k){var f=console[k];console[k]=function(){window.__probe.errors.push(k+': '+Array.prototype.join.call(arguments,' '));f.apply(console,arguments);};});</script>";

/// Injected last in `<body>`: after the load event, opens every `<details>` and writes what it
/// found into `body[data-probe]` (read back from `--dump-dom`).
const PROBE_TAIL: &str = "<script>window.addEventListener('load',function(){document.querySelectorAll('details').forEach(function(d){d.open=true;});var imgs=Array.prototype.slice.call(document.images);var bad=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0);}).map(function(i){return (i.getAttribute('src')||'').slice(0,120);});var svgs=Array.prototype.slice.call(document.querySelectorAll('svg'));var empty=svgs.filter(function(s){var b=s.getBoundingClientRect();return !(b.width>0&&b.height>0&&s.querySelectorAll('*').length>5);}).length;document.body.setAttribute('data-probe',JSON.stringify({errors:window.__probe.errors,images:imgs.length,bad_images:bad,svgs:svgs.length,empty_svgs:empty}));});</script>";

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("ZOOLOGY_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join("chromium")).find(|p| p.is_file())
}

/// Runs headless Chromium with the machine notes' flags, a fresh profile, and `args`; returns
/// (stdout, stderr), killing it after two minutes.
fn run_chromium(exe: &Path, profile: &Path, args: &[String]) -> (String, String) {
    std::fs::create_dir_all(profile).unwrap();
    let mut child = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

#[test]
fn the_report_renders_in_a_browser_without_errors() {
    let Some(chrome) = chromium() else {
        if std::env::var_os("ZOOLOGY_SKIP_BROWSER").is_some() {
            println!("SKIPPED: no chromium on PATH and ZOOLOGY_SKIP_BROWSER is set");
            return;
        }
        panic!("headless Chromium is needed: `apt-get install chromium` (.ci/run does it), or set ZOOLOGY_SKIP_BROWSER=1 to skip this test");
    };
    let dir = tmpdir("browser");
    let sweep = dir.join("sweep.toml");
    std::fs::write(&sweep, SWEEP).unwrap();
    let out = dir.join("out");
    let o = Command::new(EXE)
        .args(["sweep", "run", "-q", "--threads", "1", "--out"])
        .arg(&out)
        .arg(&sweep)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let o = Command::new(EXE).arg("report").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();

    // 1. the probe's copy: errors, images, plots
    let probed = html.replacen("<head>", &format!("<head>{PROBE_HEAD}"), 1).replacen(
        "</body>",
        &format!("{PROBE_TAIL}</body>"),
        1,
    );
    assert!(probed.contains("__probe") && probed.contains("data-probe"), "the page has no <head> or </body>");
    let probe_page = out.join("report-probe.html");
    std::fs::write(&probe_page, probed).unwrap();
    let (dom, log) = run_chromium(
        &chrome,
        &dir.join("profile1"),
        &[
            "--enable-logging=stderr".into(),
            "--v=0".into(),
            "--virtual-time-budget=10000".into(),
            "--dump-dom".into(),
            format!("file://{}", probe_page.display()),
        ],
    );
    let attr = dom
        .split("data-probe=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("the page did not finish loading (no probe result); chromium said:\n{log}"));
    let probe: serde_json::Value = serde_json::from_str(&unescape(attr)).unwrap();
    println!("browser probe: {probe}");
    assert_eq!(probe["errors"], serde_json::json!([]), "console or page errors: {probe}");
    assert_eq!(probe["bad_images"], serde_json::json!([]), "images that did not load: {probe}");
    // Figure 2, the state-size plot and each run's curves: every one draws something
    assert!(probe["svgs"].as_u64().unwrap() >= 6, "{probe}");
    assert_eq!(probe["empty_svgs"], 0, "plots that render empty: {probe}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");

    // 2. a screenshot of the page itself
    let shot = out.join("report-screenshot.png");
    let (_, log) = run_chromium(
        &chrome,
        &dir.join("profile2"),
        &[
            "--window-size=1280,2000".into(),
            format!("--screenshot={}", shot.display()),
            format!("file://{}", page.display()),
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}); chromium said:\n{log}"));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a blank or broken screenshot ({} bytes)", png.len());
    if let Ok(to) = std::env::var("ZOOLOGY_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, &to).unwrap();
        println!("screenshot copied to {to}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
