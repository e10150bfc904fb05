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
