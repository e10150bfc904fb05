//! What windtunnel writes for other tools, read by those tools: the exported `config.json` by
//! `transformers.AutoConfig`, `export --format megatron`'s arguments by megatron-core's classes,
//! the TensorBoard event files by TensorBoard's own reader. The Python side needs `transformers`,
//! `megatron-core` and `tensorboard`: `.ci/run` makes target/interop-venv with them and sets
//! WINDTUNNEL_PYTHON; without it those tests show as ignored. The event files' framing and
//! contents are checked here in Rust either way.

mod common;
use common::ok;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run a Python program with the interop venv's interpreter; its stdout as JSON.
fn python(program: &str, args: &[&str], home: &Path) -> serde_json::Value {
    python_with(&["-c", program], args, home)
}

/// Run `python FIRST... ARGS...` with the interop venv's interpreter; its stdout as JSON.
fn python_with(first: &[&str], args: &[&str], home: &Path) -> serde_json::Value {
    let interpreter = std::env::var("WINDTUNNEL_PYTHON").expect("WINDTUNNEL_PYTHON names a Python with transformers and tensorboard");
    let out =
        Command::new(interpreter).args(first).args(args).env("HF_HUB_OFFLINE", "1").env("HF_HOME", home).env("TF_CPP_MIN_LOG_LEVEL", "3").output().unwrap();
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The eval losses of a run's metrics, by tokens.
fn eval_losses(run: &Path) -> Vec<(u64, f32)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["eval_loss"].is_number())
        .map(|v| (v["tokens"].as_u64().unwrap(), v["eval_loss"].as_f64().unwrap() as f32))
        .collect()
}

#[test]
#[cfg_attr(not(windtunnel_python), ignore = "needs Python with transformers: set WINDTUNNEL_PYTHON (.ci/run makes target/interop-venv and does)")]
fn the_exported_config_loads_with_transformers_autoconfig() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = common::trained_law_sweep(dir.path());
    let export = dir.path().join("export");
    ok(&["export", sweep.to_str().unwrap(), "--target-params", "1e6", "--out", export.to_str().unwrap(), "--allow-implausible"]);
    let program = "import json, sys\n\
                   from transformers import AutoConfig\n\
                   c = AutoConfig.from_pretrained(sys.argv[1], trust_remote_code=True)\n\
                   print(json.dumps({'class': type(c).__name__, **c.to_dict()}))";
    let loaded = python(program, &[export.to_str().unwrap()], dir.path());
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(export.join("config.json")).unwrap()).unwrap();
    assert_eq!(loaded["class"], "MiniCPMConfig", "{loaded}");
    for key in [
        "model_type",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "scale_emb",
        "scale_depth",
        "dim_model_base",
        "rope_theta",
        "rms_norm_eps",
        "tie_word_embeddings",
    ] {
        assert_eq!(loaded[key], written[key], "{key}: transformers read {}, config.json says {}", loaded[key], written[key]);
    }
}

/// `export --format megatron` read by Megatron's own code from PyPI (megatron-core:
/// TransformerConfig, OptimizerConfig and the OptimizerParamScheduler that runs `--lr-decay-style
/// WSD`), through tests/interop/megatron_check.py, which says what it checks and what not (the
/// argument parser itself is Megatron-LM's, not on PyPI). Every value must come back as the recipe
/// has it, and Megatron's learning rate after each iteration must be windtunnel's schedule.
#[test]
#[cfg_attr(not(windtunnel_python), ignore = "needs Python with megatron-core: set WINDTUNNEL_PYTHON (.ci/run makes target/interop-venv and does)")]
fn the_megatron_arguments_round_trip_through_megatron_cores_classes() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = common::trained_law_sweep(dir.path());
    let export = dir.path().join("export");
    let printed =
        ok(&["export", sweep.to_str().unwrap(), "--target-params", "1e6", "--out", export.to_str().unwrap(), "--allow-implausible", "--format", "megatron"]);
    assert!(printed.contains("megatron_args.sh") && printed.contains("not expressible in Megatron-LM: residual-branch multiplier"), "{printed}");
    let recipe: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(export.join("recipe.json")).unwrap()).unwrap();
    let notes = recipe["trainer"]["not_expressed"].as_array().unwrap();
    assert!(notes.iter().all(|n| n["setting"] != "decay shape"), "the sweep's linear decay is Megatron's linear: {notes:?}");
    // The array's words as bash hands them to pretrain_gpt.py.
    let words = Command::new("bash")
        .args(["-c", "source \"$1\" && printf '%s\\n' \"${MEGATRON_ARGS[@]}\"", "_"])
        .arg(export.join("megatron_args.sh"))
        .output()
        .unwrap();
    assert!(words.status.success(), "{}", String::from_utf8_lossy(&words.stderr));
    let words = String::from_utf8(words.stdout).unwrap();
    let words: Vec<&str> = words.lines().collect();
    let check = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/megatron_check.py");
    let read = python_with(&[check.to_str().unwrap()], &words, dir.path());

    let (shape, adamw, lr) = (&recipe["shape"], &recipe["adamw"], &recipe["learning_rates"]);
    for (megatron, ours) in [
        ("num_layers", &shape["depth"]),
        ("hidden_size", &shape["width"]),
        ("ffn_hidden_size", &shape["ffn_width"]),
        ("num_attention_heads", &shape["heads"]),
        ("num_query_groups", &shape["kv_heads"]),
        ("vocab_size", &shape["vocab"]),
        ("seq_length", &recipe["seq_len"]),
        ("init_method_std", &recipe["mup"]["init_std"]),
        ("lr", &lr["base"]),
        ("weight_decay", &recipe["weight_decay"]),
        ("adam_beta1", &adamw["beta1"]),
        ("adam_beta2", &adamw["beta2"]),
        ("adam_eps", &adamw["eps"]),
        ("clip_grad", &adamw["grad_clip"]),
        ("global_batch_size", &recipe["batch"]["sequences"]),
        ("train_iters", &recipe["schedule"]["total_steps"]),
    ] {
        assert_eq!(read[megatron].as_f64(), ours.as_f64(), "{megatron}: Megatron read {}, the recipe says {ours}", read[megatron]);
    }
    assert_eq!(
        (read["kv_channels"].as_u64(), &read["gated_linear_unit"], &read["normalization"]),
        (Some(64), &serde_json::json!(true), &serde_json::json!("RMSNorm"))
    );
    let mup = &read["mup"];
    assert_eq!(mup["use_mup"], true);
    assert_eq!(mup["mup_base_hidden_size"].as_str().unwrap().parse::<f64>().ok(), recipe["mup"]["base_width"].as_f64());
    assert_eq!(mup["mup_embedding_mult"].as_str().unwrap().parse::<f64>().ok(), recipe["mup"]["scale_emb"].as_f64());
    assert_eq!(mup["mup_output_mult"].as_str().unwrap().parse::<f64>().unwrap(), 1.0 / lr["width_multiplier"].as_f64().unwrap());
    // The budget: iterations × global batch × sequence length is the recipe's tokens.
    let tokens_per_step = recipe["batch"]["tokens"].as_u64().unwrap();
    assert_eq!(read["train_iters"].as_u64().unwrap() * tokens_per_step, recipe["schedule"]["total_tokens"].as_u64().unwrap());
    // The schedule: Megatron's learning rate once k iterations are done is η times windtunnel's
    // factor at k steps' tokens, for every k. (Megatron trains iteration k at the rate of k − 1
    // done, so its warmup starts from 0: the same curve, one step later.)
    let schedule: windtunnel::schedule::ScheduleSpec = serde_json::from_value(recipe["schedule"]["schedule"].clone()).unwrap();
    let total_tokens = recipe["schedule"]["total_tokens"].as_u64().unwrap();
    let eta = lr["base"].as_f64().unwrap();
    let lrs = read["lr_after_each_iteration"].as_array().unwrap();
    assert_eq!(lrs.len() as u64, recipe["schedule"]["total_steps"].as_u64().unwrap());
    for (k, megatron) in (1u64..).zip(lrs) {
        let ours = eta * schedule.factor(k * tokens_per_step, total_tokens);
        let megatron = megatron.as_f64().unwrap();
        assert!((megatron - ours).abs() <= 1e-12 * eta, "after {k} iterations: Megatron {megatron}, windtunnel {ours}");
    }
}

#[test]
#[cfg_attr(not(windtunnel_python), ignore = "needs Python with tensorboard: set WINDTUNNEL_PYTHON (.ci/run makes target/interop-venv and does)")]
fn tensorboard_reads_every_runs_event_file() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = common::trained_law_sweep(dir.path());
    ok(&["tensorboard", sweep.to_str().unwrap()]);
    let program = "import json, os, sys\n\
                   from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n\
                   out = {}\n\
                   for root, _, files in os.walk(sys.argv[1]):\n\
                   \x20   if any(f.startswith('events.out.tfevents') for f in files):\n\
                   \x20       acc = EventAccumulator(root); acc.Reload()\n\
                   \x20       out[os.path.basename(root)] = {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()['scalars']}\n\
                   print(json.dumps(out))";
    let read = python(program, &[sweep.join("tensorboard").to_str().unwrap()], dir.path());
    let runs: Vec<PathBuf> = std::fs::read_dir(sweep.join("runs")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(read.as_object().unwrap().len(), runs.len(), "one TensorBoard run per run: {read}");
    for run in runs {
        let id = run.file_name().unwrap().to_str().unwrap().to_string();
        let (_, scalars) = read.as_object().unwrap().iter().find(|(name, _)| name.ends_with(&id)).unwrap_or_else(|| panic!("{id} missing"));
        // A diverged run may have no evaluation: no such tag.
        let eval: Vec<(u64, f32)> =
            scalars["loss/eval"].as_array().into_iter().flatten().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap() as f32)).collect();
        assert_eq!(eval, eval_losses(&run), "{id}: the eval losses at their token counts");
    }
}

/// TFRecord framing with CRC-32C checks, and the events' scalars, decoded here without Python.
#[test]
fn event_files_are_framed_and_hold_every_logged_eval() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = common::trained_law_sweep(dir.path());
    let printed = ok(&["tensorboard", sweep.to_str().unwrap()]);
    assert!(
        printed.contains("20 run(s) written") && printed.contains("tensorboard --logdir") && printed.contains("wandb sync --sync-tensorboard"),
        "{printed}"
    );
    for run in std::fs::read_dir(sweep.join("runs")).unwrap().flatten().map(|e| e.path()) {
        let id = run.file_name().unwrap().to_str().unwrap().to_string();
        let folder = std::fs::read_dir(sweep.join("tensorboard"))
            .unwrap()
            .flatten()
            .flat_map(|g| std::fs::read_dir(g.path()).unwrap().flatten())
            .find(|r| r.file_name().to_str().unwrap().ends_with(&id))
            .unwrap();
        let bytes = std::fs::read(folder.path().join("events.out.tfevents.0.windtunnel")).unwrap();
        let records = tfrecords(&bytes);
        assert!(String::from_utf8_lossy(&records[0]).contains("brain.Event:2"));
        let mut evals = Vec::new();
        for event in &records[1..] {
            let step = field_varint(event, 2).unwrap();
            for value in fields(&field_bytes(event, 5).unwrap(), 1) {
                if field_bytes(&value, 1).unwrap() == b"loss/eval" {
                    evals.push((step, f32::from_le_bytes(field_fixed32(&value, 2).unwrap())));
                }
            }
        }
        assert_eq!(evals, eval_losses(&run), "{id}");
    }
}

fn masked_crc32c(data: &[u8]) -> u32 {
    // CRC-32C bit by bit, independent of the table in src/tensorboard.rs.
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    (!crc).rotate_right(15).wrapping_add(0xa282_ead8)
}

fn tfrecords(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len_bytes = &bytes[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), masked_crc32c(len_bytes), "length CRC");
        let data = &bytes[12..12 + len];
        assert_eq!(u32::from_le_bytes(bytes[12 + len..16 + len].try_into().unwrap()), masked_crc32c(data), "data CRC");
        out.push(data.to_vec());
        bytes = &bytes[16 + len..];
    }
    out
}

fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Every field of a protocol buffer message: (number, wire type, raw value).
fn parse(bytes: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let key = varint(bytes, &mut at);
        let (number, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => varint(bytes, &mut at).to_le_bytes().to_vec(),
            1 => (at..at + 8).map(|i| bytes[i]).collect::<Vec<_>>().tap(|_| at += 8),
            2 => {
                let len = varint(bytes, &mut at) as usize;
                (at..at + len).map(|i| bytes[i]).collect::<Vec<_>>().tap(|_| at += len)
            }
            5 => (at..at + 4).map(|i| bytes[i]).collect::<Vec<_>>().tap(|_| at += 4),
            other => panic!("wire type {other}"),
        };
        out.push((number, wire, value));
    }
    out
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&Self)) -> Self {
        f(&self);
        self
    }
}
impl<T> Tap for T {}

fn fields(bytes: &[u8], number: u64) -> Vec<Vec<u8>> {
    parse(bytes).into_iter().filter(|f| f.0 == number).map(|f| f.2).collect()
}
fn field_bytes(bytes: &[u8], number: u64) -> Option<Vec<u8>> {
    parse(bytes).into_iter().find(|f| f.0 == number && f.1 == 2).map(|f| f.2)
}
fn field_varint(bytes: &[u8], number: u64) -> Option<u64> {
    parse(bytes).into_iter().find(|f| f.0 == number && f.1 == 0).map(|f| u64::from_le_bytes(f.2.try_into().unwrap()))
}
fn field_fixed32(bytes: &[u8], number: u64) -> Option<[u8; 4]> {
    parse(bytes).into_iter().find(|f| f.0 == number && f.1 == 5).map(|f| f.2.try_into().unwrap())
}
