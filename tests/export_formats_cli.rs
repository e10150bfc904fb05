//! `export --format`: each trainer's file through the real binary, without Python (the trainers'
//! own parsers read them in tests/interop_cli.rs). What a trainer cannot express must be in its
//! file, the printed summary and recipe.json alike; the Megatron-LM array must be one bash reads.

mod common;
use common::ok;

use std::path::Path;
use std::process::Command;

fn export(sweep: &Path, out: &Path, format: &str) -> (String, serde_json::Value) {
    let args = ["export", sweep.to_str().unwrap(), "--target-params", "1e6", "--out", out.to_str().unwrap(), "--allow-implausible", "--format", format];
    let printed = ok(&args);
    let recipe = serde_json::from_str(&std::fs::read_to_string(out.join("recipe.json")).unwrap()).unwrap();
    (printed, recipe)
}

#[test]
fn each_format_writes_its_file_and_says_what_its_trainer_cannot_express() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = common::trained_law_sweep(dir.path());

    // hf, the default: the files it always wrote, and no trainer entry.
    let hf = dir.path().join("hf");
    let (printed, recipe) = export(&sweep, &hf, "hf");
    assert!(hf.join("config.json").is_file() && hf.join("configuration_minicpm.py").is_file(), "{printed}");
    assert!(recipe.get("trainer").is_none() && !printed.contains("not expressible"), "{printed}");

    for (format, file, trainer) in [("megatron", "megatron_args.sh", "Megatron-LM"), ("nanotron", "nanotron.yaml", "nanotron")] {
        let out = dir.path().join(format);
        let (printed, recipe) = export(&sweep, &out, format);
        assert!(out.join(file).is_file() && !out.join("config.json").exists(), "{format}: {printed}");
        assert!(printed.contains(&format!("wrote {}, {}", out.join(file).display(), out.join("recipe.json").display())), "{printed}");
        assert_eq!(recipe["trainer"]["file"], file);
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        let notes = recipe["trainer"]["not_expressed"].as_array().unwrap();
        assert!(!notes.is_empty(), "{format}: MiniCPM's residual multiplier at least is no trainer's");
        for n in notes {
            let line = format!("{} = {}: {}", n["setting"].as_str().unwrap(), n["value"].as_str().unwrap(), n["instead"].as_str().unwrap());
            assert!(printed.contains(&format!("  not expressible in {trainer}: {line}\n")), "{format}: {line} not printed:\n{printed}");
            assert!(text.contains(&format!("#   - {line}\n")), "{format}: {line} not in {file}:\n{text}");
        }
        let json = ok(&[
            "export",
            sweep.to_str().unwrap(),
            "--target-params",
            "1e6",
            "--out",
            out.to_str().unwrap(),
            "--allow-implausible",
            "--format",
            format,
            "--json",
        ]);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["trainer"], recipe["trainer"], "{format}: --json and recipe.json agree");
    }
}

#[test]
fn the_megatron_array_is_what_bash_hands_to_pretrain_gpt() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = common::trained_law_sweep(dir.path());
    let out = dir.path().join("export");
    let (_, recipe) = export(&sweep, &out, "megatron");
    let words = Command::new("bash")
        .args(["-c", "set -eu; source \"$1\"; printf '%s\\n' \"${MEGATRON_ARGS[@]}\"", "_"])
        .arg(out.join("megatron_args.sh"))
        .output()
        .unwrap();
    assert!(words.status.success(), "{}", String::from_utf8_lossy(&words.stderr));
    let words = String::from_utf8(words.stdout).unwrap();
    let words: Vec<&str> = words.lines().collect();
    let value = |flag: &str| words.iter().position(|w| *w == flag).map(|i| words[i + 1]).unwrap_or_else(|| panic!("{flag} missing: {words:?}"));
    let number = |flag: &str| value(flag).parse::<f64>().unwrap();
    assert_eq!(number("--num-layers"), recipe["shape"]["depth"].as_f64().unwrap());
    assert_eq!(number("--hidden-size"), recipe["shape"]["width"].as_f64().unwrap());
    assert_eq!(number("--lr"), recipe["learning_rates"]["base"].as_f64().unwrap());
    assert_eq!(number("--global-batch-size"), recipe["batch"]["sequences"].as_f64().unwrap());
    assert_eq!(number("--train-iters"), recipe["schedule"]["total_steps"].as_f64().unwrap());
    assert_eq!(number("--lr-wsd-decay-iters"), recipe["schedule"]["decay_steps"].as_f64().unwrap());
    assert_eq!(number("--lr-warmup-iters"), recipe["schedule"]["warmup_steps"].as_f64().unwrap());
    // TINY decays linearly to 0: Megatron-LM's own linear WSD decay, nothing approximated.
    assert_eq!((value("--lr-decay-style"), value("--lr-wsd-decay-style"), number("--min-lr")), ("WSD", "linear", 0.0));
    assert!(words.contains(&"--use-mup"), "{words:?}");
}
