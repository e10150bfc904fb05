//! The hand-off to the full run, through the real binary: every answer says which fit it came
//! from (and the same commands give the same answer whatever ran before them, unless the output
//! names the saved definition it used); the export says what it assumes; `adapt --replay` takes
//! windtunnel's own table as `fit law` does.

mod common;
use common::{fails, json, ok, windtunnel, TINY};

use std::path::{Path, PathBuf};

/// The common tiny sweep with a third width and branch point (enough points for the law); its
/// widest proxy (48, one layer: N = 26.6K) is within 2× of the smallest shape export makes (64
/// wide, one layer: 47.3K).
fn sweep_text() -> String {
    TINY.replace("eval_interval_tokens = 1280", "eval_interval_tokens = 640").replace(
        "widths = [16, 32], depth = 1, head_dim = 16 }\nwsd = { branch_tokens = [1280, 2560]",
        "widths = [16, 32, 48], depth = 1, head_dim = 16 }\nwsd = { branch_tokens = [640, 1280, 2560]",
    )
}

fn run_sweep(root: &Path) -> PathBuf {
    let file = root.join("tiny.toml");
    std::fs::write(&file, sweep_text()).unwrap();
    let out = root.join("results");
    let o = windtunnel(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.join("tiny")
}

/// `export DIR --json` with `extra` (the target N 4.7e4 unless `extra` gives one); the tiny sweep's
/// law is too loose to trust, hence --allow-implausible.
fn export(s: &str, out: &Path, extra: &[&str]) -> serde_json::Value {
    let target: &[&str] = if extra.contains(&"--target-params") { &[] } else { &["--target-params", "4.7e4"] };
    json(&[&["export", s, "--allow-implausible", "--out", out.to_str().unwrap(), "--json"][..], target, extra].concat())
}

#[test]
fn answers_say_which_fit_they_came_from_and_do_not_depend_on_an_earlier_command() {
    let root = tempfile::tempdir().unwrap();
    let sweep = run_sweep(root.path());
    let s = sweep.to_str().unwrap();
    let out = root.path().join("export");

    // Nothing saved: the default definition, stated in the text and the JSON.
    let default = export(s, &out, &[]);
    assert!(default.get("law_saved_fit").is_none(), "{default}");
    assert!(default["law_definition"]["where"].is_null());
    let text = ok(&["export", s, "--allow-implausible", "--target-params", "4.7e4", "--out", out.to_str().unwrap()]);
    assert!(
        text.contains("law      definition: N = non_embedding_params, D = tokens, loss = final_eval_loss; form chinchilla; every grid; every row"),
        "{text}"
    );
    let plot = json(&["plot", s, "--json"]);
    assert!(plot["law_definition"].as_str().unwrap().contains("every row") && plot.get("saved_fit").is_none(), "{plot}");

    // A fit of the two smaller widths is saved; every output now says it uses it, and how to
    // get the default.
    let law = ok(&["fit", "law", "--input", s, "--where", "non_embedding_params < 2e4"]);
    assert!(
        law.contains(
            "definition: N = non_embedding_params, D = tokens, loss = final_eval_loss; form chinchilla; every grid; rows where non_embedding_params < 2e4"
        ),
        "{law}"
    );
    let filtered = export(s, &out, &[]);
    let note = filtered["law_saved_fit"].as_str().unwrap();
    assert!(note.starts_with(&format!("using the fit saved by `windtunnel fit law --input {s} --where 'non_embedding_params < 2e4'` on 20")), "{note}");
    assert!(note.ends_with("(not the default: where); `--fresh` for the default, `windtunnel fit clear` to forget it"), "{note}");
    assert_ne!(filtered["law"], default["law"]);
    for command in [&["plot", s][..], &["report", s][..], &["export", s, "--allow-implausible", "--target-params", "4.7e4", "--out", out.to_str().unwrap()][..]]
    {
        let printed = ok(command);
        assert!(
            printed.contains("using the fit saved by `windtunnel fit law") && printed.contains("rows where non_embedding_params < 2e4"),
            "{command:?}: {printed}"
        );
    }
    assert!(std::fs::read_to_string(sweep.join("report.html")).unwrap().contains("using the fit saved by"));

    // --fresh: the same answer as before the fit was saved, to the bit.
    let fresh = export(s, &out, &["--fresh"]);
    assert_eq!((&fresh["law"], &fresh["predicted_loss"], &fresh["tokens"]), (&default["law"], &default["predicted_loss"], &default["tokens"]));
    assert!(fresh.get("law_saved_fit").is_none());

    // The saved fits are listed, and cleared.
    let listed = json(&["fit", "list", s, "--json"]);
    let fits = listed["fits"].as_array().unwrap();
    assert_eq!(fits.len(), 1, "{listed}");
    assert_eq!((fits[0]["kind"].as_str(), fits[0]["differs_in"][0].as_str()), (Some("law"), Some("where")));
    assert!(fits[0]["saved"]["command"].as_str().unwrap().ends_with("--where 'non_embedding_params < 2e4'"), "{listed}");
    let text = ok(&["fit", "list", s]);
    assert!(text.contains("not the default: where (outputs announce it; `--fresh` ignores it)"), "{text}");
    let cleared = ok(&["fit", "clear", s]);
    assert!(cleared.starts_with("forgot ") && cleared.contains("law.json"), "{cleared}");
    assert!(ok(&["fit", "list", s]).contains("no saved fits"));
    let after = export(s, &out, &[]);
    assert_eq!((&after["law"], after.get("law_saved_fit")), (&default["law"], None));
    let e = fails(&["fit", "clear", s, "--kind", "laws"]);
    assert!(e.contains("--kind laws: a sweep keeps the fits law, lr, batch, mixture"), "{e}");

    // A saved fit with the default definition is no news.
    ok(&["fit", "law", "--input", s, "--budgets", "1e12"]);
    assert!(export(s, &out, &[]).get("law_saved_fit").is_none());
}

#[test]
fn the_export_says_what_it_assumes() {
    let root = tempfile::tempdir().unwrap();
    let sweep = run_sweep(root.path());
    let s = sweep.to_str().unwrap();
    let out = root.path().join("export");
    let warnings = |r: &serde_json::Value| r["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect::<Vec<_>>().join("\n");

    // The case: far beyond the sweep's N, another vocabulary, depth, heads and context.
    let far = export(s, &out, &["--target-params", "50e6", "--vocab", "73440", "--seq-len", "4096", "--gqa-group", "3"]);
    let range = &far["assumptions"]["sweep_range"];
    let (n, largest) = (far["non_embedding_params"].as_f64().unwrap(), range["n"][1].as_f64().unwrap());
    let w = warnings(&far);
    assert!(w.contains(&format!("is {:.0}× the largest N the law was fitted on", n / largest)), "{w}");
    assert!(w.contains("the law is extrapolated beyond 10× (--extrapolation-limit), and its interval widened"), "{w}");
    assert!(w.contains("compute of the law's points"), "{w}");
    assert!(w.contains("the vocabulary 73,440 differs from every proxy's (64)"), "{w}");
    assert!(w.contains(&format!("the depth {} differs from every proxy's (1)", far["shape"]["depth"])), "{w}");
    assert!(w.contains("the sequence length 4,096 differs from every proxy's (32)"), "{w}");
    assert!(w.contains("the number of heads") && w.contains("differs from every proxy's (1, 2, 3)"), "{w}");
    let ratio = far["tokens_per_param"].as_f64().unwrap();
    let [lo, hi] = [0, 1].map(|i| range["tokens_per_param"][i].as_f64().unwrap());
    assert_eq!(w.contains("tokens per parameter lies outside"), ratio < lo || ratio > hi, "{ratio} vs [{lo}, {hi}]: {w}");
    // The interval is widened by how far the law is extrapolated.
    let factor = far["assumptions"]["extrapolation_factor"].as_f64().unwrap();
    assert!(factor > 1000.0, "{factor}");
    assert!(far["assumptions"]["predicted_loss"].as_str().unwrap().starts_with("widened interval"), "{}", far["assumptions"]);
    // The batch line is arithmetic that holds: no batch-size law, so the sweep's 128 tokens per
    // step in whole 4096-token sequences.
    let batch = &far["batch"];
    assert_eq!(batch["tokens"].as_u64().unwrap(), batch["sequences"].as_u64().unwrap() * 4096);
    let text = ok(&[
        "export",
        s,
        "--allow-implausible",
        "--target-params",
        "50e6",
        "--vocab",
        "73440",
        "--seq-len",
        "4096",
        "--gqa-group",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        text.contains("batch    1 sequence × 4096 = 4096 tokens; from the sweep's 128 tokens per step, in whole sequences of 4096; no batch-size law"),
        "{text}"
    );
    assert!(text.contains("warning: no batch-size law in"), "{text}");
    // A higher limit silences the extrapolation warnings, not the others.
    let limit = format!("{}", factor * 10.0);
    let w = warnings(&export(s, &out, &["--target-params", "50e6", "--vocab", "73440", "--extrapolation-limit", &limit]));
    assert!(!w.contains("extrapolated beyond") && w.contains("the vocabulary 73,440"), "{w}");
    let e = fails(&["export", s, "--target-params", "4.7e4", "--extrapolation-limit", "0.5"]);
    assert!(e.contains("--extrapolation-limit 0.5: give a factor of at least 1"), "{e}");

    // Within the limit of the sweep's range, with its vocabulary, depth, heads and context: no
    // warning of any of these, and the law's interval widened by the little it extrapolates.
    let inside = export(s, &out, &[]);
    let w = warnings(&inside);
    for unwanted in ["extrapolated", "differs from every proxy", "compute of the law's points", "tokens per parameter lies outside"] {
        assert!(!w.contains(unwanted), "{unwanted}: {w}");
    }
    assert_eq!((inside["shape"]["depth"].as_u64(), inside["shape"]["heads"].as_u64()), (Some(1), Some(1)), "{}", inside["shape"]);
    let factor = inside["assumptions"]["extrapolation_factor"].as_f64().unwrap();
    assert!(factor > 1.0 && factor < 10.0, "{}", inside["assumptions"]);
    assert!(inside["assumptions"]["predicted_loss"].as_str().unwrap().starts_with(&format!("widened interval (×{:.2}", 1.0 + factor.log10())));
}

#[test]
fn adapt_replays_windtunnels_own_table_as_fit_law_does() {
    let root = tempfile::tempdir().unwrap();
    let sweep = run_sweep(root.path());
    let table = sweep.join("table.csv");
    let t = table.to_str().unwrap();
    // --tokens from the table's `tokens` column; the trunks and the learning-rate scan left out,
    // as fit law leaves them out, and said so.
    let base = ["adapt", "--replay", t, "--target", "allocation:1e11", "--bootstrap", "20"];
    let report = json(&[&base[..], &["--json"]].concat());
    assert_eq!(report["rows"], 9, "{report}");
    let left = report["left_out"].as_array().unwrap();
    assert_eq!(left[0], "11 trunks and runs that are not decayed branches (fit law's points are the branches)", "{report}");
    assert!(report.get("warnings").is_none(), "{report}");
    // --where and --grid as in fit law.
    let small = json(&[&base[..], &["--where", "non_embedding_params < 2e4", "--json"]].concat());
    assert_eq!(small["rows"], 6);
    let e = fails(&[&base[..], &["--grid", "nope"]].concat());
    assert!(e.contains("--grid nope:") && e.contains("its grids are lr, data"), "{e}");
    // A budget no candidate comes near is refused (1e300 exited 0 with D/N = 7.9e25).
    let e = fails(&["adapt", "--replay", t, "--target", "allocation:1e300"]);
    assert!(e.contains("the target budget 1.000e300 FLOPs is") && e.contains("lower the budget, or add larger models or token counts"), "{e}");
    // Rows that mix what one law should not be fitted on are warned of: the learning-rate scan.
    let lr = ok(&[&base[..], &["--grid", "lr", "--where", "lr < 1"]].concat());
    assert!(lr.contains("warning: the rows hold a learning-rate scan (several learning rates at one N and D)"), "{lr}");
}

#[test]
fn init_force_and_other_writes_never_replace_a_device_or_a_folder() {
    use std::os::unix::fs::FileTypeExt;
    // `init /dev/null --force` replaced the device with a file. A socket stands in for it here,
    // so that a regression fails this test without replacing the machine's /dev/null.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("device.toml");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let e = fails(&["init", socket.to_str().unwrap(), "--force"]);
    assert_eq!(e.trim_end(), format!("error: {} is a socket, not a regular file; windtunnel writes only regular files: give a file path", socket.display()));
    assert!(std::fs::metadata(&socket).unwrap().file_type().is_socket(), "the socket was replaced");
    let folder = dir.path().join("tunnel.toml");
    std::fs::create_dir(&folder).unwrap();
    let e = fails(&["init", folder.to_str().unwrap(), "--force"]);
    assert!(e.contains("tunnel.toml is a folder, not a regular file"), "{e}");
    assert!(folder.is_dir());
    // A regular file is still replaced.
    let file = dir.path().join("t.toml");
    std::fs::write(&file, "old").unwrap();
    ok(&["init", file.to_str().unwrap(), "--force"]);
    assert!(std::fs::read_to_string(&file).unwrap().contains("name = \"t\""));
}

#[test]
fn unbounded_counts_are_capped_with_a_message() {
    // `bootstrap = 4000000000` ran for minutes, deaf to Ctrl-C; now refused before any fit.
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.csv");
    let mut text = String::from("N,D,loss\n");
    for n in [1e6, 2e6, 4e6] {
        for d in [1e8, 2e8, 4e8] {
            text.push_str(&format!("{n},{d},{}\n", 2.0 + 400.0 / f64::powf(n, 0.34) + 400.0 / f64::powf(d, 0.28)));
        }
    }
    std::fs::write(&table, text).unwrap();
    let t = table.to_str().unwrap();
    let e = fails(&["fit", "law", "--input", t, "--n", "N", "--tokens", "D", "--loss", "loss", "--bootstrap", "4000000000"]);
    assert_eq!(e.trim_end(), "error: bootstrap 4000000000: at most 100000 resamples (a 95% interval settles within a few thousand; 1000 is plenty)");
    let e = fails(&["adapt", "--replay", t, "--n", "N", "--tokens", "D", "--loss", "loss", "--target", "allocation:1e16", "--bootstrap", "4000000000"]);
    assert!(e.contains("at most 100000 resamples per round"), "{e}");
    let e = fails(&["fit", "curve", "--input", t, "--bootstrap", "4000000000"]);
    assert!(e.contains("--bootstrap 4000000000: at most 100000 resamples"), "{e}");
    // A header-only table and a one-row table: what is wrong, not a flag to raise.
    let header = dir.path().join("header.csv");
    std::fs::write(&header, "N,D,loss\n").unwrap();
    let e = fails(&["adapt", "--replay", header.to_str().unwrap(), "--n", "N", "--tokens", "D", "--loss", "loss", "--target", "allocation:1e16"]);
    assert!(e.contains("header.csv has a header and no rows: nothing to replay"), "{e}");
    let one = dir.path().join("one.csv");
    std::fs::write(&one, "N,D,loss\n1e6,1e8,3.0\n").unwrap();
    let e = fails(&["adapt", "--replay", one.to_str().unwrap(), "--n", "N", "--tokens", "D", "--loss", "loss", "--target", "allocation:1e15"]);
    assert!(e.contains("one.csv: 1 row(s) to replay, too few for the law; it needs at least 6, over several N and D"), "{e}");
    let e = fails(&["tensorboard", dir.path().to_str().unwrap(), "--follow", "--every-s", "1e9"]);
    assert!(e.contains("--every-s 1000000000: give a positive number of seconds, at most a day (86400)"), "{e}");
}
