//! `windtunnel serve`, end to end: the real binary serving real sweep directories, asked over
//! HTTP as a browser would (and, where Chromium is installed, by a headless Chromium).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{json, ok, TINY};

/// A `windtunnel serve` on a free loopback port, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dirs: &[&Path]) -> Self {
        let mut args = vec!["serve".to_string(), "--bind".into(), "127.0.0.1:0".into(), "--stall-after-s".into(), "30".into()];
        args.extend(dirs.iter().map(|d| d.display().to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_windtunnel")).args(&args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
        let port = first.split("127.0.0.1:").nth(1).and_then(|r| r.split('/').next()).and_then(|p| p.parse().ok());
        let port = port.unwrap_or_else(|| panic!("first line names the address: {first:?}"));
        Self { child, port }
    }

    /// GET `path`: (status code, body).
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, body.to_string())
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every path under `dir` with its size, sorted.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else {
                out.push((p, meta.len()));
            }
        }
    }
    out.sort();
    out
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_finished_sweep_is_served_with_its_curves_fits_runs_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("tiny.toml");
    std::fs::write(&sweep, TINY).unwrap();
    let results = dir.path().join("results");
    ok(&["run", s(&sweep), "--out", s(&results), "--parallel", "2", "--quiet"]);
    let sweep_dir = results.join("tiny");
    let plan: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sweep_dir.join("plan.json")).unwrap()).unwrap();
    let run_ids: Vec<&str> = plan["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    // `fit lr` on a sweep directory saves its fit there: before the snapshot of what exists.
    let lr = json(&["fit", "lr", "--input", s(&sweep_dir), "--json"]);
    let before = files(&sweep_dir);
    let server = Server::start(&[&results]);

    let (status, index) = server.get("/");
    assert_eq!(status, 200);
    assert!(index.contains("href=\"/sweep/tiny\""), "{index}");
    let (status, page) = server.get("/sweep/tiny");
    assert_eq!(status, 200);
    assert!(
        page.contains("data-sweep=\"tiny\"") && page.contains("<canvas id=by-tokens>") && !page.contains("http://") && !page.contains("https://"),
        "self-contained"
    );

    let progress = server.json("/api/sweeps/tiny/progress");
    assert_eq!(progress["runs"], run_ids.len());
    assert_eq!(progress["running"], 0);
    assert_eq!(progress["diverged"], 2, "the lr = 1000 runs, one per width");
    assert_eq!(progress["done"].as_u64().unwrap() + 2, run_ids.len() as u64);
    assert!(progress["oracle_loss"].as_f64().unwrap() > 0.0, "synthetic data: the oracle line");

    let curves = server.json("/api/sweeps/tiny/curves");
    let runs = curves["runs"].as_array().unwrap();
    assert_eq!(runs.len(), run_ids.len(), "every run logged metrics");
    for r in runs {
        let id = r["id"].as_str().unwrap();
        let logged = std::fs::read_to_string(sweep_dir.join("runs").join(id).join("metrics.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = logged.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let points = r["points"].as_array().unwrap();
        // Few lines: every one is kept, with its numbers.
        assert_eq!(points.len(), lines.len(), "{id}");
        assert_eq!(points.last().unwrap()[0].as_f64().unwrap(), lines.last().unwrap()["tokens"].as_f64().unwrap());
        let evals = lines.iter().filter(|l| l["eval_loss"].as_f64().is_some_and(f64::is_finite)).count();
        assert_eq!(points.iter().filter(|p| p[3].is_number()).count(), evals, "{id}");
    }
    let version = curves["version"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(900));
    let unchanged = server.json(&format!("/api/sweeps/tiny/curves?since={version}"));
    assert_eq!(unchanged["runs"].as_array().unwrap().len(), 0, "nothing changed since");

    let rows = server.json("/api/sweeps/tiny/runs");
    assert_eq!(rows.as_array().unwrap().len(), run_ids.len());
    assert!(rows.as_array().unwrap().iter().any(|r| r["lr"] == 1000.0 && r["state"] == "diverged"));

    // The fits: computed in the background, the same numbers as `windtunnel fit lr`.
    let mut fits = serde_json::Value::Null;
    wait_for("the fits", Duration::from_secs(60), || {
        fits = server.json("/api/sweeps/tiny/fits");
        fits["html"].is_string() && fits["computing"] == false
    });
    let html = fits["html"].as_str().unwrap();
    let optimum = &lr["groups"][0][1]["optima"][0];
    assert!(html.contains(&format!("{:.3e}", optimum["lr_opt"].as_f64().unwrap())), "η* as `fit lr` gives it: {html}");
    assert!(html.contains("<svg"), "charts drawn by the report's renderer");

    // Files: a run's own, as on disk; nothing else, however the path is spelled.
    let id = run_ids[0];
    let (status, metrics) = server.get(&format!("/files/tiny/{id}/metrics.jsonl"));
    assert_eq!(status, 200);
    assert_eq!(metrics, std::fs::read_to_string(sweep_dir.join("runs").join(id).join("metrics.jsonl")).unwrap());
    for bad in [
        format!("/files/tiny/{id}/../../plan.json"),
        format!("/files/tiny/{id}/..%2F..%2Fplan.json"),
        "/files/tiny/..%2F..%2F..%2Fetc/passwd".to_string(),
        "/files/tiny/%2Fetc%2Fpasswd/metrics.jsonl".to_string(),
        format!("/files/tiny/{id}/checkpoints"),
        format!("/files/tiny/{id}/run.lock"),
        "/files/tiny/nosuchrun/metrics.jsonl".to_string(),
        "/files/nosuchsweep/x/metrics.jsonl".to_string(),
        "/../../etc/passwd".to_string(),
    ] {
        let (status, body) = server.get(&bad);
        assert!(status == 404 || status == 400, "GET {bad}: {status} {body}");
        assert!(!body.contains("root:"), "GET {bad} leaked a file");
    }
    // A symlink out of the sweep directory is refused.
    let outside = dir.path().join("secret.txt");
    std::fs::write(&outside, "secret").unwrap();
    let log = sweep_dir.join("runs").join(id).join("worker.log");
    std::fs::remove_file(&log).ok();
    std::os::unix::fs::symlink(&outside, &log).unwrap();
    let (status, body) = server.get(&format!("/files/tiny/{id}/worker.log"));
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("secret"));
    std::fs::remove_file(&log).unwrap();

    // A half-written and a malformed line are skipped, never a failure.
    let other = runs.iter().find(|r| r["state"] == "done").unwrap()["id"].as_str().unwrap().to_string();
    let path = sweep_dir.join("runs").join(&other).join("metrics.jsonl");
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"garbage\n{\"step\": 99, \"tok").unwrap();
    std::thread::sleep(Duration::from_millis(900));
    let again = server.json("/api/sweeps/tiny/curves");
    let points = |c: &serde_json::Value| c["runs"].as_array().unwrap().iter().find(|r| r["id"] == other.as_str()).unwrap()["points"].as_array().unwrap().len();
    assert_eq!(points(&again), points(&curves));

    // Read-only: the server wrote nothing into the sweep (the test's own edits aside).
    let mut after = files(&sweep_dir);
    after.retain(|(p, _)| p != &path && p != &log);
    let mut expected = before;
    expected.retain(|(p, _)| p != &path && p != &log);
    assert_eq!(after, expected);
}

#[test]
fn a_sweep_that_starts_while_served_appears_and_its_curves_grow() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    let server = Server::start(&[&results]);
    assert_eq!(server.json("/api/sweeps").as_array().unwrap().len(), 0);
    let sweep = dir.path().join("long.toml");
    std::fs::write(
        &sweep,
        r#"name = "long"
seeds = [0]
[base]
mup = { base_width = 16 }
optimizer = { lr = 0.01 }
schedule = { kind = "cosine", warmup_tokens = 256 }
training = { tokens = 40960000, batch_size = 4, seq_len = 32, eval_interval_tokens = 12800, eval_tokens = 256, log_interval_steps = 1 }
data = { kind = "synthetic", vocab = 64 }
[[grid]]
name = "lr"
models = { widths = [16, 32], depth = 1, head_dim = 16 }
"#,
    )
    .unwrap();
    // Long enough (minutes) to be still training when the progress is read; killed below.
    let mut run = Command::new(env!("CARGO_BIN_EXE_windtunnel"))
        .args(["run", s(&sweep), "--out", s(&results), "--parallel", "2", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its page is found by name as soon as the sweep has a plan (no visit to the index needed).
    wait_for("the sweep's page", Duration::from_secs(30), || server.get("/sweep/long").0 == 200);
    assert_eq!(server.json("/api/sweeps").as_array().unwrap().len(), 1);
    let total = |c: &serde_json::Value| c["runs"].as_array().unwrap().iter().map(|r| r["points"].as_array().unwrap().len()).sum::<usize>();
    let mut first = 0;
    wait_for("the first metrics", Duration::from_secs(60), || {
        first = total(&server.json("/api/sweeps/long/curves"));
        first > 0
    });
    wait_for("more metrics", Duration::from_secs(60), || total(&server.json("/api/sweeps/long/curves")) > first);
    let progress = server.json("/api/sweeps/long/progress");
    let active = progress["active"].as_array().unwrap();
    assert!(progress["running"].as_u64().unwrap() >= 1 && !active.is_empty(), "{progress}");
    assert!(active[0]["step"].as_u64().unwrap() > 0 && active[0]["train_loss"].is_number() && active[0]["stalled"] == false, "{progress}");
    run.kill().unwrap();
    run.wait().unwrap();
}

#[test]
#[cfg_attr(not(windtunnel_browser), ignore = "needs Chromium: set WINDTUNNEL_BROWSER=1 where one is installed (.ci/run installs Debian's and does)")]
fn a_browser_draws_the_curves() {
    let chromium =
        ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()));
    let chromium = chromium.expect("WINDTUNNEL_BROWSER=1 but no Chromium is installed (chromium, chromium-browser or google-chrome)");
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("tiny.toml");
    std::fs::write(&sweep, TINY).unwrap();
    let results = dir.path().join("results");
    ok(&["run", s(&sweep), "--out", s(&results), "--parallel", "2", "--quiet"]);
    let server = Server::start(&[&results.join("tiny")]);
    let profile = dir.path().join("profile");
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=15000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &format!("http://127.0.0.1:{}/sweep/tiny", server.port)])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let drawn = |id: &str| -> usize {
        let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no canvas {id} in:\n{dom}"));
        let tag = &dom[dom[..at].rfind('<').unwrap()..at + dom[at..].find('>').unwrap()];
        tag.split("data-drawn=\"").nth(1).and_then(|r| r.split('"').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(drawn("by-tokens") >= 6 && drawn("by-flops") >= 6, "curves drawn: {} / {}\n{dom}", drawn("by-tokens"), drawn("by-flops"));
    assert!(dom.contains("done") && dom.contains("N = "), "progress and legend rendered:\n{dom}");
}

/// A folder serve cannot list is refused at the start, not shown as "no sweep yet". As root
/// (who reads any folder) the server runs as `nobody`.
#[test]
fn an_unreadable_folder_is_refused_not_shown_empty() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = dir.path().join("results");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o311)).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_windtunnel"));
    command.args(["serve", "--bind", "127.0.0.1:0", s(&locked)]);
    if unsafe { libc::geteuid() } == 0 {
        command.uid(65534).gid(65534);
    }
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("serve went on serving a folder it cannot list");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served an unreadable folder");
    assert!(stderr.contains(&format!("cannot list {}", locked.display())) && stderr.contains("Permission denied"), "{stderr}");
}
