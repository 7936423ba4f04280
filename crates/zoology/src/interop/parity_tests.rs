//! Step-exact parity with Zoology's own code (issue 24): for each fixture written by
//! `scripts/zoology_fixtures.py` from HazyResearch/zoology (its commit is in each JSON), the
//! Zoology state dict is imported, and zoology-rs must give the same logits and loss (relative
//! error ≤ 1e-5, fp32), the same gradient for every parameter (≤ 1e-4) and the same parameters
//! after one AdamW step (≤ 1e-6); exporting the imported model must give back Zoology's state
//! dict. Relative error = max |ours − theirs| / max |theirs| over the tensor.

use super::*;
use crate::train::optim::AdamW;
use crate::train::trainer::sparse_head_loss;

fn fixture(case: &str) -> (Value, HashMap<String, Tensor>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/zoology");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{case}.json"))).unwrap()).unwrap();
    let t = Tensor::read_safetensors(dir.join(format!("{case}.safetensors"))).unwrap().into_iter().collect();
    (json, t)
}

fn rel(ours: &Tensor, theirs: &Tensor) -> f64 {
    assert_eq!(ours.size(), theirs.size());
    let scale = theirs.abs().max().double_value(&[]).max(1e-30);
    (ours.to_kind(Kind::Float) - theirs).abs().max().double_value(&[]) / scale
}

/// A zoology-rs run config for a fixture: its vocabulary and an MQAR segment as long as its
/// sequences (BaseConv's l_max).
fn base_config(vocab: i64, seq_len: i64) -> RunConfig {
    let task = format!("task = \"mqar\"\nseq_len = {seq_len}\nnum_kv_pairs = 2\nnum_examples = 4\n");
    let text = format!("seed = 1\n[data]\nvocab_size = {vocab}\nbatch_size = 4\n[[data.train]]\n{task}[[data.test]]\n{task}[train]\nepochs = 1\n");
    RunConfig::from_toml_str(&text, "test").unwrap()
}

fn params_of(t: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    t.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v.shallow_clone()))).collect()
}

fn check_case(case: &str) {
    let (json, t) = fixture(case);
    let (x, y) = (&t["inputs"], &t["targets"]);
    let base = base_config(json["model"]["vocab_size"].as_i64().unwrap(), x.size()[1]);
    let state = params_of(&t, "param/");
    let (cfg, vs, lm) = import_model(&json["model"], &base, &state, case).unwrap();
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));

    // export gives back Zoology's state dict (its own pos_emb.z included)
    let (exported, zcfg) = export_model(&cfg, &named).unwrap();
    // by hand: ZOOLOGY_PARITY_DUMP=DIR writes the export, to load into Zoology (strict) and compare
    if let Some(dir) = std::env::var_os("ZOOLOGY_PARITY_DUMP") {
        let dir = Path::new(&dir);
        Tensor::write_safetensors(&exported, dir.join(format!("{case}.safetensors"))).unwrap();
        std::fs::write(dir.join(format!("{case}.json")), serde_json::to_string(&zcfg).unwrap()).unwrap();
    }
    assert_eq!(exported.len(), state.len(), "{case}: exported tensors vs Zoology's state dict");
    for (n, e) in &exported {
        let r = rel(e, &state[n]);
        assert!(r <= 1e-6, "{case}: exported {n} differs from Zoology's by {r:.2e}");
    }

    let logits = lm.logits(x, true);
    let r = rel(&logits, &t["logits"]);
    assert!(r <= 1e-5, "{case}: logits relative error {r:.2e}");
    let (loss, _, _, _) = sparse_head_loss(&lm, x, y, true);
    let r = rel(&loss.reshape([1]), &t["loss"]);
    assert!(r <= 1e-5, "{case}: loss relative error {r:.2e}");

    let mut opt = adamw(&json, &named);
    opt.zero_grad();
    loss.backward();
    let grads = params_of(&t, "grad/");
    let zshape = |n: &str, p: &Tensor| names::to_zoology(n, &cfg.model, &p.size()).unwrap();
    let mut seen = BTreeSet::new();
    for (n, p) in &named {
        let m = zshape(n, p);
        let r = rel(&m.to_zoology_layout(&p.grad()), &m.select(&grads[&m.zoology]));
        assert!(r <= 1e-4, "{case}: gradient of {n} ({}) relative error {r:.2e}", m.zoology);
        seen.insert(m.zoology);
    }
    let theirs: BTreeSet<String> = grads.keys().cloned().collect();
    assert_eq!(seen, theirs, "{case}: every trainable Zoology parameter is a zoology-rs parameter");
    check_step(case, &json, &t, &base);
    // end to end, with our own gradients: entries whose gradient is rounding noise (|g| below
    // 1e-6, where Adam's g/(|g|+ε) turns noise into an update of ±lr) are left out; a
    // gradient that is exactly 0 in theory (attention's key bias) is such noise on both sides
    let lr = json["optimizer"]["lr"].as_f64().unwrap();
    opt.step(lr);
    let after = params_of(&t, "after/");
    for (n, p) in &named {
        let m = zshape(n, p);
        let mask = m.select(&grads[&m.zoology]).abs().ge(1e-6);
        if mask.sum(Kind::Int64).int64_value(&[]) == 0 {
            continue; // every entry is noise; the step on Zoology's gradients checked it
        }
        let ours = m.to_zoology_layout(p).masked_select(&mask);
        let r = rel(&ours, &m.select(&after[&m.zoology]).masked_select(&mask));
        assert!(r <= 1e-6, "{case}: {n} after one AdamW step on our gradients: relative error {r:.2e}");
    }
}

/// AdamW with the fixture's settings (Zoology's `optim.AdamW(lr, weight_decay)`).
fn adamw(json: &Value, named: &[(String, Tensor)]) -> AdamW {
    let o = &json["optimizer"];
    let betas = o["betas"].as_array().unwrap();
    AdamW::new(
        named.iter().map(|(n, p)| (n.clone(), p.shallow_clone())).collect(),
        o["weight_decay"].as_f64().unwrap(),
        betas[0].as_f64().unwrap(),
        betas[1].as_f64().unwrap(),
        o["eps"].as_f64().unwrap(),
        false,
    )
}

/// One AdamW step on Zoology's own gradients: every parameter, every entry, ≤ 1e-6.
fn check_step(case: &str, json: &Value, t: &HashMap<String, Tensor>, base: &RunConfig) {
    let (cfg, vs, lm) = import_model(&json["model"], base, &params_of(t, "param/"), case).unwrap();
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = adamw(json, &named);
    let (loss, _, _, _) = sparse_head_loss(&lm, &t["inputs"], &t["targets"], true);
    loss.backward();
    let (grads, after) = (params_of(t, "grad/"), params_of(t, "after/"));
    tch::no_grad(|| {
        for (n, p) in &named {
            let m = names::to_zoology(n, &cfg.model, &p.size()).unwrap();
            p.grad().copy_(&m.from_zoology_layout(&m.select(&grads[&m.zoology]), &p.size()));
        }
    });
    opt.step(json["optimizer"]["lr"].as_f64().unwrap());
    for (n, p) in &named {
        let m = names::to_zoology(n, &cfg.model, &p.size()).unwrap();
        let r = rel(&m.to_zoology_layout(p), &m.select(&after[&m.zoology]));
        assert!(r <= 1e-6, "{case}: {n} after one AdamW step on Zoology's gradients: relative error {r:.2e}");
    }
}

#[test]
fn attention_matches_zoology_step_exactly() {
    check_case("attention");
}

#[test]
fn sliding_window_matches_zoology_step_exactly() {
    check_case("sliding_window");
}

#[test]
fn hyena_matches_zoology_step_exactly() {
    check_case("hyena");
}

/// Another filter depth, emb_dim and FIR length (the `implicit_filter` indices move).
#[test]
fn hyena_other_shapes_match_zoology_step_exactly() {
    check_case("hyena_short");
}

#[test]
fn based_matches_zoology_step_exactly() {
    check_case("based");
}

#[test]
fn linear_attention_pos_elu_matches_zoology_step_exactly() {
    check_case("linear_attention_pos_elu");
}

#[test]
fn linear_attention_relu_matches_zoology_step_exactly() {
    check_case("linear_attention_relu");
}

#[test]
fn linear_attention_square_matches_zoology_step_exactly() {
    check_case("linear_attention_square");
}

/// Hybrid [BaseConv, Based] over 3 layers: layer 2 is BaseConv again, with an implicit long
/// filter (Zoology indexes its kernel-size list by the global layer index).
#[test]
fn hybrid_matches_zoology_step_exactly() {
    check_case("hybrid");
}

#[test]
fn base_conv_short_matches_zoology_step_exactly() {
    check_case("base_conv_short");
}

#[test]
fn base_conv_implicit_long_matches_zoology_step_exactly() {
    check_case("base_conv_implicit");
}

#[test]
fn base_conv_explicit_long_matches_zoology_step_exactly() {
    check_case("base_conv_explicit");
}

/// A fixture recorded on a CPU: its JSON must name `reference` as what ran for `kernel`.
fn check_case_with_kernels(case: &str, kernel: &str, reference: &str) {
    let (json, _) = fixture(case);
    let named = json["kernels"][kernel].as_str().unwrap_or("");
    assert!(named.contains(reference), "{case}: the fixture ran {named:?} for {kernel}, not {reference}");
    check_case(case);
}

/// Zoology's `Mamba` in its `MambaBlock` (RMSNorm → mixer, one residual, no state mixer),
/// recorded with mamba_ssm's own reference scan and RMSNorm in place of the CUDA/Triton
/// kernels (the fixture's `kernels` lists them).
#[test]
fn mamba_matches_zoology_step_exactly() {
    check_case_with_kernels("mamba", "selective_scan_fn", "mamba_ssm selective_scan_ref");
}

/// Zoology's `GatedLinearAttention` (fla's GLA layer, defaults but 2 heads and a rank-4 gate),
/// recorded with fla 0.2.1's own references in place of its Triton kernels
/// (`naive_recurrent_gla`, the gated `rms_norm_ref`).
#[test]
fn gla_matches_zoology_step_exactly() {
    check_case_with_kernels("gla", "fused_recurrent_gla", "fla naive_recurrent_gla");
}

/// Zoology's `H3` (2 heads of width 2, d_state 8), which runs on a CPU as shipped: its diagonal
/// SSM is bilinear, as ours by default; its complex `C` and `B` are real pairs in the state dict.
#[test]
fn h3_matches_zoology_step_exactly() {
    check_case_with_kernels("h3", "log_vandermonde", "log_vandermonde_naive");
}

/// What Zoology's MambaBlock and Mamba cannot express is refused on export, naming the field.
#[test]
fn mamba_export_refuses_what_zoology_cannot_express() {
    let model = |extra: &str| -> crate::model::ModelConfig {
        toml::from_str(&format!("d_model = 16\n{extra}mixer = {{ name = \"mamba\" }}")).unwrap()
    };
    let e = |m: &crate::model::ModelConfig| zconfig::to_zoology(m, 32, 12).err().expect("must fail").to_string();
    let ok = zconfig::to_zoology(&model("state_mixer = \"identity\"\n"), 32, 12).unwrap();
    assert_eq!(ok["block_type"], json!("MambaBlock"));
    assert_eq!(ok["sequence_mixer"]["kwargs"]["dt_rank"], json!("auto"));
    assert!(e(&model("")).contains("model.state_mixer"), "the default mlp state mixer has no MambaBlock counterpart");
    assert!(e(&model("state_mixer = \"identity\"\nembed_dropout = 0.1\n")).contains("model.embed_dropout"));
    let r: crate::model::ModelConfig =
        toml::from_str("d_model = 16\nstate_mixer = \"identity\"\nmixer = { name = \"mamba\", dt_rank = 3 }").unwrap();
    assert!(e(&r).contains("model.mixer.dt_rank"));
    let att: crate::model::ModelConfig =
        toml::from_str("block = \"mamba\"\nstate_mixer = \"identity\"\nmixer = { name = \"attention\" }").unwrap();
    assert!(e(&att).contains("model.block"));
}

/// h3 and gla variants Zoology's classes do not have are refused on export and import.
#[test]
fn h3_and_gla_refuse_what_zoology_cannot_express() {
    let model = |m: &str| -> crate::model::ModelConfig { toml::from_str(&format!("mixer = {m}")).unwrap() };
    let e = |m: &str| zconfig::to_zoology(&model(m), 32, 12).err().expect("must fail").to_string();
    assert!(e("{ name = \"h3\", discretization = \"zoh\" }").contains("model.mixer.discretization"));
    assert!(e("{ name = \"h3\", trained_b = false }").contains("trained_b = true"));
    let (json, t) = fixture("gla");
    let state = params_of(&t, "param/");
    let imp = |f: &dyn Fn(&mut Value)| {
        let mut m = json["model"].clone();
        f(&mut m);
        import_model(&m, &base_config(32, 12), &state, "F").err().expect("must fail").to_string()
    };
    assert!(imp(&|m| m["sequence_mixer"]["kwargs"]["use_short_conv"] = json!(true)).contains("use_short_conv"));
    assert!(imp(&|m| m["sequence_mixer"]["kwargs"]["fuse_norm"] = json!(false)).contains("g_norm"));
    assert!(imp(&|m| m["sequence_mixer"]["kwargs"]["num_kv_heads"] = json!(1)).contains("num_kv_heads"));
}

/// Import is strict, with errors that name what is wrong.
#[test]
fn import_refuses_incomplete_foreign_or_mismatched_state_dicts() {
    let (json, t) = fixture("base_conv_implicit");
    let base = base_config(32, 12);
    let state = params_of(&t, "param/");
    let err =
        |s: &HashMap<String, Tensor>, m: &Value| import_model(m, &base, s, "F").err().expect("must fail").to_string();

    let mut missing = state.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect::<HashMap<_, _>>();
    missing.remove("backbone.layers.0.sequence_mixer.projection.bias");
    assert!(err(&missing, &json["model"]).contains("has no tensor backbone.layers.0.sequence_mixer.projection.bias"));

    let mut extra = state.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect::<HashMap<_, _>>();
    extra.insert("backbone.layers.0.sequence_mixer.extra".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu)));
    assert!(err(&extra, &json["model"]).contains("holds backbone.layers.0.sequence_mixer.extra"));

    let mut untied = state.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect::<HashMap<_, _>>();
    untied.insert(LM_HEAD.into(), state[LM_HEAD].zeros_like());
    assert!(err(&untied, &json["model"]).contains("Zoology ties them"));

    let mut unknown = json["model"].clone();
    unknown["sequence_mixer"]["kwargs"]["use_act"] = json!(true);
    assert!(err(&state, &unknown).contains("use_act"));
    let mut typo = json["model"].clone();
    typo["d_modle"] = json!(16);
    assert!(err(&state, &typo).contains("d_modle"));

    // a long filter sized for other data: named, with the fix
    let other = base_config(32, 16);
    let e = import_model(&json["model"], &other, &state, "F").err().unwrap().to_string();
    assert!(e.contains("l_max = 12") && e.contains("longest sequence is 16"), "{e}");
}

/// The verbs' library calls end to end: a trained run directory (a 3-layer hybrid
/// [BaseConv, attention], layer 2 an implicit long BaseConv) exported, then imported from the
/// export alone (its JSON carries the run config), gives a run with the same config, the same
/// accuracy on the same test data and, exported again, the same state dict.
#[test]
fn export_then_import_gives_back_the_same_run() {
    use crate::train::{train, TrainOptions};
    let root = std::env::temp_dir().join(format!("zoology-interop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let task = "task = \"mqar\"\nseq_len = 12\nnum_kv_pairs = 2\n";
    let text = format!(
        "seed = 3\n[data]\nvocab_size = 32\nbatch_size = 16\n[[data.train]]\n{task}num_examples = 64\n[[data.test]]\n{task}num_examples = 32\n\
         [model]\nd_model = 16\nn_layers = 3\nmixer = {{ name = \"hybrid\", layers = [{{ name = \"base_conv\", kernel_size = [3, 3, -1] }}, {{ name = \"attention\" }}] }}\n\
         [train]\nepochs = 1\nschedule = \"cosine_per_epoch\"\nshuffle = false\n"
    );
    let cfg = RunConfig::from_toml_str(&text, "test").unwrap();
    let src = root.join("src");
    let s =
        train(&cfg, &TrainOptions { out_dir: src.clone(), resume: false, quiet: true, label: String::new() }).unwrap();
    let r = export_run(&src, &root.join("m.safetensors"), true).unwrap();
    assert!(r.test.as_ref().unwrap().exists());
    let back = root.join("back");
    let imp = import_run(&r.weights, &r.config, None, &back).unwrap();
    assert_eq!(imp.accuracy, s.final_accuracy, "the imported run scores the same on the same test data");
    let (a, b) = (crate::generate::read_config(&src).unwrap(), crate::generate::read_config(&back).unwrap());
    assert_eq!(a.model, b.model);
    assert_eq!(crate::rundir::run_id(&a), crate::rundir::run_id(&b));
    let again = export_run(&back, &root.join("again.safetensors"), false).unwrap();
    let sorted = |p: &Path| {
        let mut v = Tensor::read_safetensors(p).unwrap();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (x, y) = (sorted(&r.weights), sorted(&again.weights));
    assert_eq!(x.len(), y.len());
    assert!(x.iter().any(|(n, _)| n.ends_with("layers.2.sequence_mixer.mixer.conv.pos_emb.z")));
    for ((n, s), (m, t)) in x.iter().zip(&y) {
        assert_eq!(n, m);
        assert!(s.equal(t), "{n} changed in the round trip");
    }
    // a second import into the same directory is refused, naming --out
    let e = import_run(&r.weights, &r.config, None, &back).err().unwrap().to_string();
    assert!(e.contains("--out") && e.contains("already holds a run"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}
