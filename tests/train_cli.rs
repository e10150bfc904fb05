//! `windtunnel train` through the real binary: determinism, kill and resume, branches,
//! divergence, corrupt checkpoints and malformed run files.

mod common;
use common::{fails, run_file, windtunnel};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The deterministic part of each metrics line: everything but timings.
fn losses(dir: &Path) -> Vec<(u64, String, String, String)> {
    metrics(dir).iter().map(|m| (m["step"].as_u64().unwrap(), m["train_loss"].to_string(), m["eval_loss"].to_string(), m["lr"].to_string())).collect()
}

fn train(args: &[&str]) -> std::process::Output {
    windtunnel(&[&["train", "--quiet"], args].concat())
}

/// Start `windtunnel train FILE --out OUT` in the background, silent.
fn spawn_train(file: &Path, out: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_windtunnel"))
        .args(["train", "--quiet", file.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn status(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("status.json")).unwrap()).unwrap()
}

#[test]
fn same_config_and_seed_give_bit_identical_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "r.toml", "", 30, &[]);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for out in [&a, &b] {
        let o = train(&[file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(losses(&a).len(), 30);
    let first = metrics(&a)[0]["train_loss"].as_f64().unwrap();
    let last = metrics(&a).last().unwrap()["train_loss"].as_f64().unwrap();
    assert!(last < first - 0.5, "loss should fall: {first} → {last}");
    assert_eq!(status(&a)["state"], "done");
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(a.join("run.json")).unwrap()).unwrap();
    assert!(run["non_embedding_params"].as_u64().unwrap() > 0 && run["flops_per_token"]["total"].as_u64().unwrap() > 0);
    assert!(run["oracle_eval_loss"].as_f64().unwrap() > 0.0);
    // The oracle loss is reported next to each eval loss.
    assert!(metrics(&a).iter().any(|m| m["eval_loss"].is_f64() && m["oracle_loss"].is_f64()));
    // Rerunning into the same directory without --resume is refused.
    let e = fails(&["train", file.to_str().unwrap(), "--out", a.to_str().unwrap()]);
    assert!(e.contains("already holds a run") && e.contains("--resume"), "{e}");
}

/// Train `file` into `cut` and SIGKILL it as soon as its checkpoint at `step` (128 tokens a step)
/// is written.
fn sigkill_once_checkpointed(file: &Path, cut: &Path, step: u64) {
    let mut child = spawn_train(file, cut);
    let checkpoint = cut.join("checkpoints").join(format!("tokens-{:015}.ckpt", step * 128));
    let started = Instant::now();
    while !checkpoint.exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn sigkill_then_resume_reproduces_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "r.toml", "", 400, &[40]);
    let whole = tmp.path().join("whole");
    assert!(train(&[file.to_str().unwrap(), "--out", whole.to_str().unwrap()]).status.success());

    let cut = tmp.path().join("cut");
    sigkill_once_checkpointed(&file, &cut, 40);
    let before = metrics(&cut).len();
    assert!(before < 400, "the run finished before it could be killed; make it longer");

    let o = train(&[file.to_str().unwrap(), "--out", cut.to_str().unwrap(), "--resume", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(summary["resumed_from_step"].as_u64().unwrap() >= 40);
    assert_eq!(losses(&cut), losses(&whole), "resumed run must equal the uninterrupted one bit for bit");
}

#[test]
fn sigterm_checkpoints_marks_interrupted_and_exits_143() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "r.toml", "", 600, &[]);
    let out = tmp.path().join("run");
    let mut child = spawn_train(&file, &out);
    let started = Instant::now();
    while !out.join("metrics.jsonl").exists() || metrics(&out).len() < 5 {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let code = child.wait().unwrap();
    assert_eq!(code.code(), Some(143));
    let s = status(&out);
    assert_eq!(s["state"], "interrupted");
    let step = s["step"].as_u64().unwrap();
    assert!(std::fs::read_dir(out.join("checkpoints")).unwrap().count() == 1);
    // Resuming continues from that step.
    let o = train(&[file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--resume", "--json"]);
    assert!(o.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["resumed_from_step"].as_u64().unwrap(), step);
}

#[test]
fn a_corrupt_checkpoint_is_reported_and_an_older_one_used() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "r.toml", "", 40, &[10, 20]);
    let out = tmp.path().join("run");
    assert!(train(&[file.to_str().unwrap(), "--out", out.to_str().unwrap()]).status.success());
    let ckpts = out.join("checkpoints");
    // Corrupt the final checkpoint and the one at step 20: flip a byte, truncate.
    let last = ckpts.join(format!("tokens-{:015}.ckpt", 40 * 128));
    let mut bytes = std::fs::read(&last).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&last, bytes).unwrap();
    let twenty = ckpts.join(format!("tokens-{:015}.ckpt", 20 * 128));
    let len = std::fs::metadata(&twenty).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&twenty).unwrap().set_len(len / 3).unwrap();

    let o = train(&[file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--resume", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(&format!("tokens-{:015}.ckpt is corrupt", 40 * 128)), "{stderr}");
    assert!(stderr.contains(&format!("tokens-{:015}.ckpt is corrupt", 20 * 128)), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["resumed_from_step"].as_u64().unwrap(), 10);
}

#[test]
fn branches_start_from_the_trunk_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let trunk_file = run_file(tmp.path(), "trunk.toml", "", 40, &[20]);
    let trunk = tmp.path().join("trunk");
    assert!(train(&[trunk_file.to_str().unwrap(), "--out", trunk.to_str().unwrap()]).status.success());
    let trunk_losses = losses(&trunk);

    // A branch with the trunk's own (constant) schedule continues the trunk exactly.
    let same = run_file(tmp.path(), "same.toml", "[branch]\ntrunk = \"trunk\"\nfrom_tokens = 2560\n", 40, &[]);
    let out = tmp.path().join("same");
    let o = train(&[same.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(losses(&out), trunk_losses[20..].to_vec());

    // A zero-length decay reproduces the trunk's evaluation at the branch point.
    let zero = run_file(tmp.path(), "zero.toml", "[branch]\ntrunk = \"trunk\"\nfrom_tokens = 2560\n", 20, &[]);
    let zero_out = tmp.path().join("zero");
    let o = train(&[zero.to_str().unwrap(), "--out", zero_out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let trunk_eval_at_20 = metrics(&trunk).iter().find(|m| m["step"] == 20).unwrap()["eval_loss"].clone();
    assert_eq!(summary["final_eval_loss"], trunk_eval_at_20);

    // A real decay: linear over the branch's 10 steps.
    let decay = run_file(tmp.path(), "decay.toml", "[branch]\ntrunk = \"trunk\"\nfrom_tokens = 2560\n", 30, &[]).to_str().unwrap().to_string();
    let text = std::fs::read_to_string(&decay)
        .unwrap()
        .replace("kind = \"constant\"\nwarmup_tokens = 1280", "kind = \"wsd\"\nwarmup_tokens = 1280\ndecay = \"linear\"\ndecay_tokens = 1280");
    std::fs::write(&decay, text).unwrap();
    let decay_out = tmp.path().join("decay");
    let o = train(&[&decay, "--out", decay_out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = metrics(&decay_out);
    assert_eq!(m.first().unwrap()["step"], 21);
    assert!(m.last().unwrap()["lr"].as_f64().unwrap() < 0.01 * 0.2);

    // A branch that changes what it must share is refused with the differences listed.
    let bad = run_file(tmp.path(), "bad.toml", "[branch]\ntrunk = \"trunk\"\nfrom_tokens = 2560\n", 30, &[]);
    std::fs::write(&bad, std::fs::read_to_string(&bad).unwrap().replace("lr = 0.01", "lr = 0.02")).unwrap();
    let e = fails(&["train", bad.to_str().unwrap(), "--out", tmp.path().join("bad").to_str().unwrap()]);
    assert!(e.contains("differs from its trunk") && e.contains("optimizer"), "{e}");
    let missing = run_file(tmp.path(), "missing.toml", "[branch]\ntrunk = \"trunk\"\nfrom_tokens = 1280\n", 30, &[]);
    let e = fails(&["train", missing.to_str().unwrap(), "--out", tmp.path().join("m").to_str().unwrap()]);
    assert!(e.contains("no checkpoint") && e.contains("1280"), "{e}");
}

#[test]
fn a_too_large_learning_rate_ends_as_diverged() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "r.toml", "", 200, &[]);
    std::fs::write(
        &file,
        std::fs::read_to_string(&file).unwrap().replace("lr = 0.01", "lr = 1000.0\ngrad_clip = 0.0").replace("warmup_tokens = 1280", "warmup_tokens = 0"),
    )
    .unwrap();
    let out = tmp.path().join("run");
    let o = train(&[file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(status(&out)["state"], "diverged");
    let m = metrics(&out);
    assert!(!m.is_empty() && m.len() < 200, "metrics up to the divergence remain");
}

#[test]
fn malformed_run_files_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let out = out.to_str().unwrap();
    let good = run_file(tmp.path(), "r.toml", "", 10, &[]);
    let text = std::fs::read_to_string(&good).unwrap();
    let write = |name: &str, t: String| {
        let p = tmp.path().join(name);
        std::fs::write(&p, t).unwrap();
        p.to_str().unwrap().to_string()
    };
    let e = fails(&["train", &write("typo.toml", text.replace("seq_len = 32", "seq_len = 32\nseqlen = 3")), "--out", out]);
    assert!(e.contains("typo.toml") && e.contains("seqlen"), "{e}");
    let e = fails(&["train", &write("type.toml", text.replace("batch_size = 4", "batch_size = \"four\"")), "--out", out]);
    assert!(e.contains("type.toml") && e.contains("batch_size"), "{e}");
    let e = fails(&["train", &write("ck.toml", text.replace("checkpoint_tokens = []", "checkpoint_tokens = [999999]")), "--out", out]);
    assert!(e.contains("checkpoint_tokens") && e.contains("999999"), "{e}");
    let e = fails(&["train", &write("huge.toml", text.replace("eval_tokens = 256", "eval_tokens = 18446744073709551615")), "--out", out]);
    assert!(e.contains("huge.toml") && e.contains("training.eval_tokens = 18446744073709551615 is beyond the largest allowed (1e15)"), "{e}");
    let e = fails(&["train", &write("heads.toml", text.replace("heads = 2", "heads = 3")), "--out", out]);
    assert!(e.contains("`heads` (3) must divide `width` (32)"), "{e}");
    let e = fails(&["train", tmp.path().join("none.toml").to_str().unwrap(), "--out", out]);
    assert!(e.contains("none.toml"), "{e}");
    let json = write("r.json", r#"{"model": {"width": 32}}"#.into());
    let e = fails(&["train", &json, "--out", out]);
    assert!(e.contains("r.json") && e.contains("missing field"), "{e}");
}

/// The sweep executor gives workers different CPU thread counts; losses must not depend on them.
#[test]
fn losses_do_not_depend_on_the_cpu_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "r.toml", "", 20, &[]);
    let mut outs = Vec::new();
    for threads in ["1", "2"] {
        let out = tmp.path().join(format!("t{threads}"));
        let o = Command::new(env!("CARGO_BIN_EXE_windtunnel"))
            .args(["train", "--quiet", file.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        outs.push(losses(&out));
    }
    assert_eq!(outs[0], outs[1]);
}

/// `precision` is a GPU setting: on the CPU a bf16-mixed run trains in fp32 (the same losses,
/// bit for bit) and says so; an unknown precision names the choices.
#[test]
fn the_cpu_trains_in_fp32_whatever_the_precision() {
    let dir = tempfile::tempdir().unwrap();
    let fp32 = run_file(dir.path(), "fp32.toml", "", 12, &[]);
    let text = std::fs::read_to_string(&fp32).unwrap();
    let bf16 = dir.path().join("bf16.toml");
    std::fs::write(&bf16, text.replace("log_interval_steps = 1", "log_interval_steps = 1\nprecision = \"bf16-mixed\"")).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    assert!(train(&[fp32.to_str().unwrap(), "--out", a.to_str().unwrap()]).status.success());
    let o = train(&[bf16.to_str().unwrap(), "--out", b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("note: precision = \"bf16-mixed\" applies on GPUs; the CPU backend trains in fp32"));
    assert_eq!(losses(&a), losses(&b));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text.replace("log_interval_steps = 1", "log_interval_steps = 1\nprecision = \"fp8\"")).unwrap();
    let e = fails(&["train", bad.to_str().unwrap(), "--out", dir.path().join("c").to_str().unwrap()]);
    assert!(e.contains("bad.toml") && e.contains("fp8") && e.contains("bf16-mixed"), "{e}");
}

/// `micro_batch_size` accumulates gradients: the batch of 4 trained 2 or 1 sequences per pass
/// follows the whole-batch run (the same mean loss and gradients, summed in another order), is
/// deterministic and resumes bit for bit; a micro-batch of the batch or more changes nothing, and
/// one that does not divide the batch is refused naming a divisor.
#[test]
fn gradient_accumulation_trains_the_same_batch_in_micro_batches() {
    let dir = tempfile::tempdir().unwrap();
    let with = |name: &str, extra: &str| {
        let text = std::fs::read_to_string(run_file(dir.path(), name, "", 12, &[6])).unwrap();
        std::fs::write(dir.path().join(name), text.replace("log_interval_steps = 1", &format!("log_interval_steps = 1\n{extra}"))).unwrap();
        dir.path().join(name)
    };
    let trained = |file: &Path, out: &str| {
        let out = dir.path().join(out);
        let o = train(&[file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let whole = trained(&with("whole.toml", ""), "whole");
    let capped = trained(&with("capped.toml", "micro_batch_size = 8"), "capped");
    assert_eq!(losses(&capped), losses(&whole), "a micro-batch of the whole batch is the plain step");

    let values = |dir: &Path, key: &str| metrics(dir).iter().filter_map(|m| m[key].as_f64()).collect::<Vec<f64>>();
    for micro in [2, 1] {
        let file = with(&format!("micro{micro}.toml"), &format!("micro_batch_size = {micro}"));
        let a = trained(&file, &format!("m{micro}a"));
        for key in ["train_loss", "eval_loss"] {
            let (x, y) = (values(&whole, key), values(&a, key));
            assert_eq!(x.len(), y.len());
            for (step, (x, y)) in x.iter().zip(&y).enumerate() {
                assert!((x - y).abs() / x < 1e-5, "micro-batch {micro}, {key} {step}: whole batch {x}, accumulated {y}");
            }
        }
        assert_ne!(losses(&a), losses(&whole), "micro-batches sum the gradients in another order");
        let b = trained(&file, &format!("m{micro}b"));
        assert_eq!(losses(&a), losses(&b), "accumulation is deterministic");
        // Write the end again from the step-6 checkpoint: the same losses, bit for bit.
        let o = train(&[file.to_str().unwrap(), "--out", b.to_str().unwrap(), "--resume-before-tokens", &(12 * 128).to_string(), "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["resumed_from_step"], 6);
        assert_eq!(losses(&b), losses(&a), "resumed accumulation reproduces the run");
    }

    let e = fails(&["train", with("bad.toml", "micro_batch_size = 3").to_str().unwrap(), "--out", dir.path().join("bad").to_str().unwrap()]);
    assert!(e.contains("bad.toml") && e.contains("training.micro_batch_size (3) must divide training.batch_size (4)") && e.contains("such as 2"), "{e}");
    let e = fails(&["train", with("zero.toml", "micro_batch_size = 0").to_str().unwrap(), "--out", dir.path().join("zero").to_str().unwrap()]);
    assert!(e.contains("training.micro_batch_size must be at least 1"), "{e}");
}

/// Two named evaluation sets: the run's own language and another one.
const TWO_EVAL_SETS: &str = r#"
[[training.evals]]
name = "same"
data = { kind = "synthetic", vocab = 64 }
[[training.evals]]
name = "other-lang"
data = { kind = "synthetic", vocab = 64, language_seed = 7 }
"#;

/// The named sets' losses of each line of a run's metrics, as written (empty where not evaluated).
fn eval_sets(dir: &Path) -> Vec<(u64, String)> {
    metrics(dir).iter().map(|m| (m["step"].as_u64().unwrap(), m.get("evals").map(|e| e.to_string()).unwrap_or_default())).collect()
}

#[test]
fn named_eval_sets_are_logged_at_every_evaluation_and_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "r.toml", TWO_EVAL_SETS, 30, &[]);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for out in [&a, &b] {
        let o = train(&[file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let lines = metrics(&a);
    let evaluated: Vec<&serde_json::Value> = lines.iter().filter(|m| m["eval_loss"].is_f64()).collect();
    assert_eq!(evaluated.len(), 3, "an evaluation every 10 steps");
    for m in &evaluated {
        let (same, other) = (m["evals"]["same"].as_f64().unwrap(), m["evals"]["other-lang"].as_f64().unwrap());
        assert!(same.is_finite() && other.is_finite() && same != other, "{m}");
    }
    assert!(lines.iter().all(|m| m["eval_loss"].is_f64() == m.get("evals").is_some()), "named sets only beside an evaluation");
    // Trained on its own language, the model does better there than on another.
    let last = evaluated.last().unwrap();
    assert!(last["evals"]["same"].as_f64().unwrap() < last["evals"]["other-lang"].as_f64().unwrap(), "{last}");
    assert_eq!(eval_sets(&a), eval_sets(&b), "two runs evaluate their named sets bit for bit alike");
    assert_eq!(losses(&a), losses(&b));
    // The default evaluation is the one a run without named sets makes.
    let plain_file = run_file(tmp.path(), "plain.toml", "", 30, &[]);
    let plain = tmp.path().join("plain");
    assert!(train(&[plain_file.to_str().unwrap(), "--out", plain.to_str().unwrap()]).status.success());
    assert_eq!(losses(&plain), losses(&a));
    assert!(metrics(&plain).iter().all(|m| m.get("evals").is_none()));
    // run.json records each set; status.json has the latest losses.
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(a.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["eval_sets"][1]["name"], "other-lang");
    assert_eq!(run["eval_sets"][0]["eval_sequences"], run["eval_sequences"]);
    assert!(run["eval_sets"][0]["oracle_eval_loss"].as_f64().unwrap() > 0.0);
    assert_eq!(status(&a)["evals"], last["evals"]);
}

#[test]
fn named_eval_sets_resume_bit_for_bit_after_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let file = run_file(tmp.path(), "r.toml", TWO_EVAL_SETS, 400, &[40]);
    let whole = tmp.path().join("whole");
    assert!(train(&[file.to_str().unwrap(), "--out", whole.to_str().unwrap()]).status.success());

    let cut = tmp.path().join("cut");
    sigkill_once_checkpointed(&file, &cut, 40);
    assert!(metrics(&cut).len() < 400, "the run finished before it could be killed; make it longer");

    let o = train(&[file.to_str().unwrap(), "--out", cut.to_str().unwrap(), "--resume", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["resumed_from_step"].as_u64().unwrap() >= 40);
    assert_eq!(eval_sets(&cut).iter().filter(|(_, e)| !e.is_empty()).count(), 40, "an evaluation every 10 steps");
    assert_eq!(eval_sets(&cut), eval_sets(&whole), "the resumed run's named sets equal the uninterrupted run's bit for bit");
    assert_eq!(losses(&cut), losses(&whole));
}

#[test]
fn bad_named_eval_sets_are_refused_naming_the_set() {
    let tmp = tempfile::tempdir().unwrap();
    let set = |name: &str, data: &str| format!("[[training.evals]]\nname = \"{name}\"\ndata = {data}\n");
    let synthetic = "{ kind = \"synthetic\", vocab = 64 }";
    let cases = [
        (set("web", synthetic) + &set("web", synthetic), "training.evals[1].name = \"web\" is also the name of training.evals[0]"),
        (set("web site", synthetic), "training.evals[0].name = \"web site\" holds ' '"),
        (set("", synthetic), "training.evals[0].name is empty"),
        (set("web", "{ kind = \"text\", path = \"missing.txt\" }"), "training.evals[0] (\"web\"): cannot read its data"),
        (set("web", "{ kind = \"synthetic\" }"), "training.evals[0] (\"web\"): its data has vocabulary 256, [data] has 64"),
    ];
    for (i, (extra, message)) in cases.iter().enumerate() {
        let file = run_file(tmp.path(), &format!("bad{i}.toml"), extra, 10, &[]);
        let e = fails(&["train", "--quiet", file.to_str().unwrap(), "--out", tmp.path().join(format!("bad{i}")).to_str().unwrap()]);
        assert!(e.contains(message), "{extra}: {e}");
    }
}
