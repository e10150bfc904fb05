//! `windtunnel data tokenizer`, `data prepare` and `data inspect` on a prepared set, end to end:
//! the tests write their own corpus and train their own tokenizer (no network).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fails, json, ok};

/// Documents with what trips tokenizers up: non-ASCII, newlines inside, leading spaces, tabs.
fn documents(n: usize) -> Vec<String> {
    let words = ["the", "wind", "tunnel", "scaling", "law", "naïve", "café", "Ωmega", "🙂", "loss", "token", "decay"];
    (0..n)
        .map(|i| {
            let len = 5 + (i * 7) % 40;
            let body: Vec<&str> = (0..len).map(|j| words[(i * 31 + j * 17 + j * j) % words.len()]).collect();
            format!("Doc {i}:\n {}\twith a tab.\n", body.join(" "))
        })
        .collect()
}

fn jsonl(docs: &[String]) -> String {
    docs.iter().enumerate().map(|(i, d)| serde_json::json!({ "id": i, "text": d }).to_string() + "\n").collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A corpus as JSON Lines and a byte-level BPE trained on it.
fn setup(n: usize) -> (tempfile::TempDir, Vec<String>, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(n);
    let corpus = dir.path().join("corpus.jsonl");
    std::fs::write(&corpus, jsonl(&docs)).unwrap();
    let tokenizer = dir.path().join("tokenizer.json");
    let trained = json(&["data", "tokenizer", "--input", s(&corpus), "--vocab", "300", "--out", s(&tokenizer), "--json"]);
    assert_eq!(trained["vocab"], 300);
    assert_eq!(trained["documents"], n as u64);
    (dir, docs, corpus, tokenizer)
}

fn prepare(tokenizer: &Path, inputs: &[&Path], out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["data", "prepare", "--tokenizer", s(tokenizer), "--out", s(out), "--json", "--input"];
    args.extend(inputs.iter().map(|p| s(p)));
    args.extend(extra);
    json(&args)
}

fn tokens(path: &Path) -> Vec<u32> {
    std::fs::read(path).unwrap().chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect()
}

/// The documents of a prepared split, decoded (split at the end-of-document token, which ends each).
fn decoded(tokenizer: &Path, bin: &Path) -> Vec<String> {
    let t = tokenizers::Tokenizer::from_file(tokenizer).unwrap();
    let eod = t.token_to_id("<|endoftext|>").unwrap();
    let ids = tokens(bin);
    assert_eq!(ids.last(), Some(&eod), "every document, the last included, ends with the end-of-document token");
    ids.split(|&i| i == eod).filter(|d| !d.is_empty()).map(|d| t.decode(d, false).unwrap()).collect()
}

/// The documents each split must hold: input order, split by the seeded hash.
fn expected_split(docs: &[String], seed: u64, fraction: f64) -> (Vec<String>, Vec<String>) {
    let held_out = |i: usize| windtunnel::data::prepare::is_validation(seed, i as u64, fraction);
    let pick = |val: bool| docs.iter().enumerate().filter(|(i, _)| held_out(*i) == val).map(|(_, d)| d.clone()).collect();
    (pick(false), pick(true))
}

#[test]
fn jsonl_decodes_back_to_its_documents_split_whole_and_seeded() {
    let (dir, docs, corpus, tokenizer) = setup(200);
    let out = dir.path().join("set");
    let report = prepare(&tokenizer, &[&corpus], &out, &["--eval-fraction", "0.2", "--seed", "7"]);
    let (train, val) = expected_split(&docs, 7, 0.2);
    assert!(val.len() > 20 && val.len() < 60, "about a fifth held out: {}", val.len());
    assert_eq!(decoded(&tokenizer, &out.join("train.bin")), train);
    assert_eq!(decoded(&tokenizer, &out.join("val.bin")), val);
    // Exact counts, in the report and the sidecars.
    assert_eq!(report["train"]["documents"], train.len() as u64);
    assert_eq!(report["val"]["documents"], val.len() as u64);
    let text_bytes: usize = val.iter().map(String::len).sum();
    let side: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("val.bin.json")).unwrap()).unwrap();
    assert_eq!(side["vocab"], 300);
    assert_eq!(side["dtype"], "u16");
    assert_eq!(side["prepared"]["text_bytes"], text_bytes as u64);
    assert_eq!(side["prepared"]["tokens"], tokens(&out.join("val.bin")).len() as u64);
    let bpt = side["bytes_per_token"].as_f64().unwrap();
    assert_eq!(bpt, text_bytes as f64 / tokens(&out.join("val.bin")).len() as f64);
    let sha = windtunnel::data::tokenizer::sha256_hex(&std::fs::read(&tokenizer).unwrap());
    assert_eq!(side["prepared"]["tokenizer_sha256"], sha.as_str());
    assert!(!out.join(".prepare").exists(), "the work folder is gone once the set is complete");

    // Same seed: the same bytes. Another seed: another split of the same documents.
    let again = dir.path().join("again");
    prepare(&tokenizer, &[&corpus], &again, &["--eval-fraction", "0.2", "--seed", "7"]);
    assert_eq!(std::fs::read(out.join("train.bin")).unwrap(), std::fs::read(again.join("train.bin")).unwrap());
    assert_eq!(std::fs::read(out.join("val.bin")).unwrap(), std::fs::read(again.join("val.bin")).unwrap());
    let other = dir.path().join("other");
    prepare(&tokenizer, &[&corpus], &other, &["--eval-fraction", "0.2", "--seed", "8"]);
    assert_eq!(decoded(&tokenizer, &other.join("val.bin")), expected_split(&docs, 8, 0.2).1);
    assert_ne!(std::fs::read(out.join("val.bin")).unwrap(), std::fs::read(other.join("val.bin")).unwrap());

    // Re-running the finished command does nothing; other options over it need --force.
    let rerun = prepare(&tokenizer, &[&corpus], &out, &["--eval-fraction", "0.2", "--seed", "7"]);
    assert_eq!(rerun["up_to_date"], true);
    let e = fails(&["data", "prepare", "--tokenizer", s(&tokenizer), "--input", s(&corpus), "--out", s(&out), "--seed", "9"]);
    assert!(e.contains("already holds a prepared set") && e.contains("--force"), "{e}");
    prepare(&tokenizer, &[&corpus], &out, &["--eval-fraction", "0.2", "--seed", "8", "--force"]);
    assert_eq!(std::fs::read(out.join("val.bin")).unwrap(), std::fs::read(other.join("val.bin")).unwrap());

    // data inspect on the folder: both splits, the tokenizer's hash, bytes per token.
    let inspected = json(&["data", "inspect", s(&out), "--json"]);
    assert_eq!(inspected["val"]["prepared"]["documents"], expected_split(&docs, 8, 0.2).1.len() as u64);
    assert!(inspected["train"]["bytes_per_token"].as_f64().unwrap() > 1.0);
    // --show decodes the first documents of each split with the set's own tokenizer.
    let shown = json(&["data", "inspect", s(&out), "--show", "2", "--json"]);
    let samples: Vec<(String, String)> =
        shown["samples"].as_array().unwrap().iter().map(|d| (d["split"].as_str().unwrap().to_string(), d["text"].as_str().unwrap().to_string())).collect();
    let (train8, val8) = expected_split(&docs, 8, 0.2);
    let wanted: Vec<(String, String)> =
        train8[..2].iter().map(|d| ("train".to_string(), d.clone())).chain(val8[..2].iter().map(|d| ("val".to_string(), d.clone()))).collect();
    assert_eq!(samples, wanted);
    let text = ok(&["data", "inspect", s(&out)]);
    assert!(text.contains(&sha) && text.contains("bytes of text per token") && text.contains("val.bin"), "{text}");
}

/// Write `docs` as a Parquet file with an int64 `id` and a UTF-8 `text` column, in two row groups.
fn write_parquet(path: &Path, docs: &[String]) {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    let schema = std::sync::Arc::new(parquet::schema::parser::parse_message_type("message doc { required int64 id; optional binary text (UTF8); }").unwrap());
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, Default::default()).unwrap();
    let half = docs.len() / 2;
    for (start, part) in [(0, &docs[..half]), (half, &docs[half..])] {
        let mut group = writer.next_row_group().unwrap();
        let mut col = group.next_column().unwrap().unwrap();
        let ids: Vec<i64> = (start as i64..(start + part.len()) as i64).collect();
        col.typed::<Int64Type>().write_batch(&ids, None, None).unwrap();
        col.close().unwrap();
        let mut col = group.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = part.iter().map(|d| ByteArray::from(d.as_str())).collect();
        col.typed::<ByteArrayType>().write_batch(&values, Some(&vec![1; part.len()]), None).unwrap();
        col.close().unwrap();
        group.close().unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn parquet_text_folders_and_compressed_inputs_give_the_same_tokens() {
    let (dir, docs, corpus, tokenizer) = setup(60);
    let reference = dir.path().join("ref");
    prepare(&tokenizer, &[&corpus], &reference, &["--eval-fraction", "0.1"]);
    let same = |out: &Path| {
        for f in ["train.bin", "val.bin"] {
            assert_eq!(std::fs::read(reference.join(f)).unwrap(), std::fs::read(out.join(f)).unwrap(), "{} differs", out.join(f).display());
        }
    };

    let parquet = dir.path().join("docs.parquet");
    write_parquet(&parquet, &docs);
    let out = dir.path().join("pq");
    prepare(&tokenizer, &[&parquet], &out, &["--eval-fraction", "0.1"]);
    same(&out);

    // A folder of text files, a document per file (sorted by name).
    let folder = dir.path().join("texts");
    std::fs::create_dir(&folder).unwrap();
    for (i, d) in docs.iter().enumerate() {
        std::fs::write(folder.join(format!("{i:03}.txt")), d).unwrap();
    }
    let out = dir.path().join("txt");
    prepare(&tokenizer, &[&folder], &out, &["--eval-fraction", "0.1"]);
    same(&out);

    // gzip and zstd JSON Lines, split in two files given as a glob.
    let (a, b) = (dir.path().join("part-0.jsonl.gz"), dir.path().join("part-1.jsonl.zst"));
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&a).unwrap(), flate2::Compression::default());
    gz.write_all(jsonl(&docs[..25]).as_bytes()).unwrap();
    gz.finish().unwrap();
    std::fs::write(&b, zstd::encode_all(jsonl(&docs[25..]).as_bytes(), 3).unwrap()).unwrap();
    let out = dir.path().join("compressed");
    let glob = format!("{}/part-*", dir.path().display());
    json(&["data", "prepare", "--tokenizer", s(&tokenizer), "--input", &glob, "--out", s(&out), "--eval-fraction", "0.1", "--json"]);
    same(&out);

    // A document per line (the documents' own newlines replaced, so each is one line).
    let one_line: Vec<String> = docs.iter().map(|d| d.replace('\n', " ")).collect();
    let lines = dir.path().join("lines.txt");
    std::fs::write(&lines, one_line.join("\n")).unwrap();
    let out = dir.path().join("lines");
    prepare(&tokenizer, &[&lines], &out, &["--lines", "--eval-fraction", "0.1"]);
    let (train, _) = expected_split(&one_line, 0, 0.1);
    assert_eq!(decoded(&tokenizer, &out.join("train.bin")), train);
}

/// `data prepare` of `inputs` into `out`, run from `dir` with 1,500-byte chunks; killed (SIGKILL)
/// when it commits chunk `kill_at` of this invocation.
fn prepare_killed_at(dir: &Path, inputs: &[&str], out: &str, kill_at: Option<u64>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_windtunnel"));
    cmd.current_dir(dir).args(["data", "prepare", "--tokenizer", "tokenizer.json", "--out", out, "--chunk-bytes", "1500", "--input"]).args(inputs);
    if let Some(n) = kill_at {
        cmd.env("WINDTUNNEL_TEST_KILL_PREPARE_AT_CHUNK", n.to_string());
    }
    cmd.output().unwrap()
}

fn assert_same_set(dir: &Path, a: &str, b: &str, what: &str) {
    for f in ["train.bin", "val.bin", "train.bin.json", "val.bin.json"] {
        assert_eq!(std::fs::read(dir.join(a).join(f)).unwrap(), std::fs::read(dir.join(b).join(f)).unwrap(), "{f} {what}");
    }
}

#[test]
fn a_killed_prepare_resumes_to_the_same_bytes() {
    let (dir, _, _, _) = setup(400);
    // Relative paths, run from the corpus folder: the sidecars record them as given.
    let run = |out: &str, kill_at| prepare_killed_at(dir.path(), &["corpus.jsonl"], out, kill_at);
    assert!(run("whole", None).status.success());
    for kill_at in [1, 7] {
        let out = format!("killed-{kill_at}");
        let killed = run(&out, Some(kill_at));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(killed.status.signal(), Some(9), "the prepare was killed");
        assert!(!dir.path().join(&out).join("train.bin").exists(), "no output that looks complete");
        // Killed again later, then finished: still the same bytes.
        assert_eq!(run(&out, Some(3)).status.signal(), Some(9));
        let finished = run(&out, None);
        assert!(finished.status.success(), "{}", String::from_utf8_lossy(&finished.stderr));
        assert!(String::from_utf8_lossy(&finished.stderr).contains("resuming"));
        assert_same_set(dir.path(), "whole", &out, &format!("after a kill at chunk {kill_at}"));
    }
}

/// A corpus of several files: a resumed prepare skips the files it committed whole without
/// reading them, and still writes the same bytes.
#[test]
fn a_resumed_prepare_skips_the_input_files_it_finished() {
    let (dir, docs, _, _) = setup(400);
    let parts: Vec<String> = (0..4).map(|i| format!("part{i}.jsonl")).collect();
    for (part, docs) in parts.iter().zip(docs.chunks(100)) {
        std::fs::write(dir.path().join(part), jsonl(docs)).unwrap();
    }
    let inputs: Vec<&str> = parts.iter().map(String::as_str).collect();
    assert!(prepare_killed_at(dir.path(), &inputs, "whole", None).status.success());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(prepare_killed_at(dir.path(), &inputs, "cut", Some(20)).status.signal(), Some(9));
    let resumed = prepare_killed_at(dir.path(), &inputs, "cut", Some(12));
    assert_eq!(resumed.status.signal(), Some(9));
    let said = String::from_utf8_lossy(&resumed.stderr);
    assert!(said.contains("of 4 input files skipped unread") && !said.contains("(0 of 4"), "{said}");
    let finished = prepare_killed_at(dir.path(), &inputs, "cut", None);
    assert!(finished.status.success(), "{}", String::from_utf8_lossy(&finished.stderr));
    let said = String::from_utf8_lossy(&finished.stderr);
    assert!(said.contains("of 4 input files skipped unread") && !said.contains("(0 of 4") && !said.contains("(1 of 4"), "{said}");
    assert_same_set(dir.path(), "whole", "cut", "after two kills");
}

#[test]
fn a_full_disk_is_one_clear_error_and_the_prepare_resumes_once_there_is_room() {
    let Some(disk) = common::Tmpfs::mount("24k") else {
        println!("not run: cannot mount a tmpfs here (needs root)");
        return;
    };
    let (dir, _, corpus, tokenizer) = setup(400);
    let args = |out: &Path| {
        ["data", "prepare", "--tokenizer", s(&tokenizer), "--input", s(&corpus), "--out", s(out), "--chunk-bytes", "1500", "--quiet"].map(String::from).to_vec()
    };
    let whole = dir.path().join("whole");
    ok(&args(&whole).iter().map(String::as_str).collect::<Vec<_>>());
    let full = disk.dir.path().join("set");
    let e = fails(&args(&full).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("No space left on device") && e.contains("re-run the same command"), "{e}");
    assert!(!full.join("train.bin").exists());
    disk.resize("10M");
    ok(&args(&full).iter().map(String::as_str).collect::<Vec<_>>());
    for f in ["train.bin", "val.bin"] {
        assert_eq!(std::fs::read(whole.join(f)).unwrap(), std::fs::read(full.join(f)).unwrap(), "{f}");
    }
}

#[test]
fn bad_corpora_and_options_give_one_clear_error_and_no_complete_looking_output() {
    let (dir, _, corpus, tokenizer) = setup(30);
    let out = dir.path().join("out");
    let check = |input: &Path, extra: &[&str], wanted: &[&str]| {
        let mut args = vec!["data", "prepare", "--tokenizer", s(&tokenizer), "--input", s(input), "--out", s(&out)];
        args.extend(extra);
        let e = fails(&args);
        for w in wanted {
            assert!(e.contains(w), "expected {w:?} in:\n{e}");
        }
        assert!(!out.join("train.bin").exists() && !out.join("train.bin.json").exists(), "{e}");
    };
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    check(
        &write("nofield.jsonl", b"{\"text\": \"fine\"}\n{\"body\": \"x\", \"url\": \"u\"}\n"),
        &[],
        &["nofield.jsonl line 2", "no field `text`", "body, url", "--text-field"],
    );
    check(&write("number.jsonl", b"{\"text\": 5}\n"), &[], &["line 1", "is a number", "--text-field"]);
    check(&write("badjson.jsonl", b"{\"text\": \"a\"\n"), &[], &["badjson.jsonl line 1", "not a JSON object"]);
    check(&write("latin1.txt", b"caf\xe9 au lait"), &[], &["latin1.txt", "not valid UTF-8", "byte 3", "iconv"]);
    check(&write("empty.jsonl", b"{\"text\": \"a\"}\n{\"text\": \"\"}\n"), &[], &["empty.jsonl line 2", "empty document", "--skip-empty"]);
    check(&corpus, &["--text-field", "id"], &["corpus.jsonl line 1", "`id` is a number"]);
    check(&corpus, &["--eod-token", "<nope>"], &["<nope>", "not in", "vocabulary"]);
    check(&corpus, &["--eval-fraction", "1.5"], &["--eval-fraction 1.5"]);
    check(&dir.path().join("missing.jsonl"), &[], &["missing.jsonl", "cannot read"]);

    // Skipping empty documents works where stopping was the default.
    let skipped = dir.path().join("skipped");
    let some_empty = write("some-empty.jsonl", b"{\"text\": \"a\"}\n{\"text\": \"\"}\n{\"text\": \"b c\"}\n{\"text\": \"d\"}\n{\"text\": \"e f\"}\n");
    let r = prepare(&tokenizer, &[&some_empty], &skipped, &["--skip-empty", "--eval-fraction", "0.5"]);
    assert_eq!(r["train"]["documents"].as_u64().unwrap() + r["val"]["documents"].as_u64().unwrap(), 4, "{r}");
    // Holding out nothing is allowed (every token in train.bin), but never silently.
    let nothing_held = dir.path().join("nothing-held");
    let o = common::windtunnel(&[
        "data",
        "prepare",
        "--tokenizer",
        s(&tokenizer),
        "--input",
        s(&some_empty),
        "--out",
        s(&nothing_held),
        "--skip-empty",
        "--eval-fraction",
        "0",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning: --eval-fraction 0 holds nothing out: val.bin is empty"));

    // A tokenizer that does not parse.
    let broken = write("broken.json", b"{\"model\": 3}");
    let e = fails(&["data", "prepare", "--tokenizer", s(&broken), "--input", s(&corpus), "--out", s(&out)]);
    assert!(e.contains("broken.json") && e.contains("not a Hugging Face tokenizer.json"), "{e}");

    // A vocabulary that needs u32, asked for as u16.
    let big = dir.path().join("big.json");
    let vocab: std::collections::HashMap<String, u32> = (0..70_000u32).map(|i| (format!("w{i}"), i)).chain([("[UNK]".to_string(), 70_000)]).collect();
    let model = tokenizers::models::wordlevel::WordLevel::builder().vocab(vocab.into_iter().collect()).unk_token("[UNK]".into()).build().unwrap();
    let mut t = tokenizers::Tokenizer::new(model);
    t.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    t.save(&big, false).unwrap();
    let e = fails(&["data", "prepare", "--tokenizer", s(&big), "--input", s(&corpus), "--out", s(&out), "--dtype", "u16", "--eod-token", "[UNK]"]);
    assert!(e.contains("--dtype u16") && e.contains("70001") && e.contains("u32"), "{e}");
    let wide = dir.path().join("wide");
    let r = prepare(&big, &[&corpus], &wide, &["--eod-token", "[UNK]", "--eval-fraction", "0.2"]);
    assert_eq!(r["dtype"], "u32");

    // A Parquet column that is not text.
    let parquet = dir.path().join("docs.parquet");
    write_parquet(&parquet, &documents(4));
    let e = fails(&["data", "prepare", "--tokenizer", s(&tokenizer), "--input", s(&parquet), "--out", s(&out), "--text-field", "id"]);
    assert!(e.contains("docs.parquet") && e.contains("column `id`") && e.contains("not text"), "{e}");
    let e = fails(&["data", "prepare", "--tokenizer", s(&tokenizer), "--input", s(&parquet), "--out", s(&out), "--text-field", "body"]);
    assert!(e.contains("no column `body`") && e.contains("id, text"), "{e}");
}

#[test]
fn runs_on_a_prepared_set_report_bits_per_byte() {
    let (dir, _, corpus, tokenizer) = setup(300);
    let set = dir.path().join("corpus");
    prepare(&tokenizer, &[&corpus], &set, &["--domain", "web", "--eval-fraction", "0.2"]);
    let side: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(set.join("web/val.bin.json")).unwrap()).unwrap();
    let bytes_per_token = side["bytes_per_token"].as_f64().unwrap();
    let run = |data: &str, name: &str| {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "seed = 1\n[model]\nwidth = 32\ndepth = 1\nheads = 2\nkv_heads = 1\n[mup]\nbase_width = 32\n[optimizer]\nlr = 0.01\n\
                 [schedule]\nkind = \"constant\"\nwarmup_tokens = 256\n[training]\ntokens = 1024\nbatch_size = 4\nseq_len = 32\neval_interval_tokens = 512\neval_tokens = 256\n[data]\n{data}\n"
            ),
        )
        .unwrap();
        let out = dir.path().join(name);
        common::windtunnel(&["train", "--quiet", s(&file), "--out", s(&out)])
    };
    // Without the domain, the message names the domains there are.
    let e = run("kind = \"prepared\"\npath = \"corpus\"", "nodomain");
    let stderr = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && stderr.contains("web") && stderr.contains("domain"), "{stderr}");
    let done = run("kind = \"prepared\"\npath = \"corpus\"\ndomain = \"web\"", "web");
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let metrics = std::fs::read_to_string(dir.path().join("web/metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> =
        metrics.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|m| m["eval_loss"].is_f64()).collect();
    assert!(!evals.is_empty());
    for m in evals {
        let expected = m["eval_loss"].as_f64().unwrap() / bytes_per_token / std::f64::consts::LN_2;
        assert_eq!(m["eval_bits_per_byte"].as_f64().unwrap(), expected);
    }

    // Two domains under one folder: a sweep trains its trunk on one and decays on the other.
    let books = dir.path().join("books.jsonl");
    std::fs::write(&books, jsonl(&documents(120).into_iter().map(|d| d.to_uppercase()).collect::<Vec<_>>())).unwrap();
    prepare(&tokenizer, &[&books], &set, &["--domain", "books", "--eval-fraction", "0.2"]);
    let sweep = dir.path().join("two-stage.toml");
    std::fs::write(
        &sweep,
        r#"name = "two-stage"
seeds = [0]
[base]
mup = { base_width = 16 }
optimizer = { lr = 0.01 }
schedule = { kind = "constant", warmup_tokens = 128 }
training = { tokens = 1024, batch_size = 4, seq_len = 32, eval_interval_tokens = 512, eval_tokens = 256 }
data = { kind = "prepared", path = "corpus", domain = "web" }
[[grid]]
name = "data"
models = { widths = [16], depth = 1, head_dim = 16 }
wsd = { branch_tokens = [512, 1024], decay_fraction = 0.5, decay_data = { kind = "prepared", path = "corpus", domain = "books" } }
"#,
    )
    .unwrap();
    let results = dir.path().join("results");
    ok(&["run", s(&sweep), "--out", s(&results), "--quiet"]);
    let table = std::fs::read_to_string(results.join("two-stage/table.csv")).unwrap();
    assert_eq!(table.lines().filter(|l| l.contains(",branch,") && l.contains(",done,")).count(), 2, "{table}");
    let branch_configs: Vec<String> = std::fs::read_dir(results.join("two-stage/runs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path().join("config.json")).unwrap())
        .filter(|c| c.contains("\"from_tokens\""))
        .collect();
    assert_eq!(branch_configs.len(), 2);
    for c in branch_configs {
        let config: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert_eq!(config["branch"]["data"]["domain"], "books", "{c}");
        assert!(std::path::Path::new(config["branch"]["data"]["path"].as_str().unwrap()).is_absolute(), "{c}");
    }
}
