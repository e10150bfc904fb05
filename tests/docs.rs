//! The user guide cannot drift: its command reference is what the binary prints, every chapter
//! `SUMMARY.md` lists exists, and every relative link and image in the README and the guide
//! resolves to a file.

mod common;
use common::ok;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_command_reference_is_what_the_binary_prints() {
    let committed = std::fs::read_to_string(root().join("docs/src/reference/commands.md")).unwrap();
    let generated = ok(&["reference"]);
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b).map_or(committed.lines().count().min(generated.lines().count()), |i| i);
        panic!(
            "docs/src/reference/commands.md differs from `windtunnel reference` from line {}: regenerate it with\n  \
             cargo run --release -- reference > docs/src/reference/commands.md",
            line + 1
        );
    }
    // It has every command, nested ones too.
    for command in ["## `windtunnel`", "### `windtunnel run`", "### `windtunnel fit curve`", "### `windtunnel data prepare`"] {
        assert!(generated.contains(command), "{command}");
    }
}

#[test]
fn the_sweep_file_reference_is_what_the_binary_prints() {
    let committed = std::fs::read_to_string(root().join("docs/src/reference/sweep-file.md")).unwrap();
    let generated = ok(&["reference", "--sweep-file"]);
    assert!(
        committed == generated,
        "docs/src/reference/sweep-file.md differs from `windtunnel reference --sweep-file`: regenerate it with\n  \
         cargo run --release -- reference --sweep-file > docs/src/reference/sweep-file.md"
    );
    // Every section of a sweep and of a run file, every data kind, with defaults and meanings.
    for key in [
        "`seeds` | list of integer | `[0]`",
        "`grid[].wsd.decay_fraction` | number | `0.1`",
        "`base.optimizer.lr` | number | required",
        "kind = \"prepared\"",
        "`slurm.time`",
        "`adaptive.max_flops`",
        "`base.mup.depth_rule`",
    ] {
        assert!(generated.contains(key), "{key} is missing:\n{generated}");
    }
}

#[test]
fn init_writes_a_commented_sweep_that_plans_with_its_optional_sections_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tunnel.toml");
    let printed = ok(&["init", file.to_str().unwrap()]);
    assert!(printed.contains("windtunnel run") && printed.contains("reference --sweep-file"), "{printed}");
    let plan = common::json(&["plan", file.to_str().unwrap(), "--json"]);
    assert_eq!(plan["name"], "tunnel");
    assert_eq!(plan["runs"].as_array().unwrap().len(), 39, "the quickstart's 39 runs");
    let e = common::fails(&["init", file.to_str().unwrap()]);
    assert!(e.contains("exists; pass --force"), "{e}");
    let replaced = common::json(&["init", file.to_str().unwrap(), "--force", "--json"]);
    assert_eq!((replaced["name"].as_str(), replaced["runs"].as_u64()), (Some("tunnel"), Some(39)), "{replaced}");
    // The commented [slurm] and [adaptive] sections and the alternative lines are valid as written.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<String> = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        let rest = line.strip_prefix("# ").unwrap_or("");
        in_block = (in_block && !line.is_empty()) || rest == "[slurm]" || rest == "[adaptive]";
        let alternative = ["mup = ", "wsd = "].into_iter().find(|k| rest.starts_with(k));
        if let Some(key) = alternative {
            let replaced = lines.iter().rposition(|l| l.starts_with(key)).expect("the line an alternative replaces");
            lines[replaced] = rest.to_string();
        } else if in_block || rest.starts_with("parameters.") {
            lines.push(rest.to_string());
        } else {
            lines.push(line.to_string());
        }
    }
    assert!(lines.iter().any(|l| l == "[adaptive]") && lines.iter().any(|l| l.contains("completep")), "{lines:?}");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let plan = common::json(&["plan", file.to_str().unwrap(), "--json"]);
    assert!(plan["runs"].as_array().unwrap().len() > 10, "{plan}");
}

/// Markdown files of the README and the guide.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut dirs = vec![root().join("docs/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The targets of `[text](target)` and `![alt](target)` outside code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_chapter_and_every_relative_link_resolves() {
    let summary = std::fs::read_to_string(root().join("docs/src/SUMMARY.md")).unwrap();
    let chapters = links(&summary);
    assert!(chapters.len() >= 15, "{chapters:?}");
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap_or(Path::new("."));
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap();
            if !dir.join(path).exists() {
                broken.push(format!("{}: {target}", file.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n  {}", broken.join("\n  "));
}
