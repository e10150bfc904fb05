//! `windtunnel serve DIR...`: a live, local, read-only web view of sweeps — progress, loss curves
//! as they are logged, the fits as runs finish, every run's config and files.
//!
//! An HTTP server (axum on tokio) answers from what [`live`] keeps of each sweep: metrics files
//! are followed incrementally ([`tail`]), each sweep's files are looked at again at most every
//! 0.75 s, and fits run on their own thread, cached by the set of finished runs, so no request
//! waits for a fit. The server never writes into a sweep; it binds to loopback unless told
//! otherwise; the only files it serves are a run's own (`metrics.jsonl`, `worker.log`,
//! `config.json`, `run.json`, `status.json`) of a run the plan names, resolved inside the sweep
//! directory (a symlink out of it is refused).
//!
//! Endpoints: `/` (the sweeps), `/sweep/NAME` (the page), `/api/sweeps`,
//! `/api/sweeps/NAME/{progress, curves?since=V, runs, fits}` (JSON) and `/files/NAME/RUN/FILE`.

pub mod live;
pub mod tail;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::layout::SweepDir;
use live::LiveSweep;

/// What to serve and how.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Sweep directories, or folders holding sweep directories (a `results/`).
    pub dirs: Vec<PathBuf>,
    pub bind: SocketAddr,
    /// A running run with no new metrics for this long is flagged as stalled.
    pub stall_after: Duration,
}

/// The files of a run the server hands out.
const RUN_FILES: [&str; 5] = ["metrics.jsonl", "worker.log", "config.json", "run.json", "status.json"];

struct App {
    roots: Vec<PathBuf>,
    sweeps: RwLock<Vec<Arc<LiveSweep>>>,
    stall_after: Duration,
    /// When the roots were last scanned, and how long that scan took.
    last_scan: std::sync::Mutex<Option<(Instant, Duration)>>,
}

/// The roots are scanned again at most this often, and never more often than every ten scans'
/// durations: a root holding 100,000 files costs a request nothing between scans.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

impl App {
    fn new(roots: Vec<PathBuf>, stall_after: Duration) -> Self {
        Self { roots, sweeps: RwLock::new(Vec::new()), stall_after, last_scan: std::sync::Mutex::new(None) }
    }

    /// Find the sweeps under the roots again (new ones appear when a sweep starts), unless they
    /// were scanned a moment ago ([`RESCAN_EVERY`]).
    fn discover(&self) {
        let mut last = self.last_scan.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|(at, took)| at.elapsed() < RESCAN_EVERY.max(10 * took)) {
            return;
        }
        let started = Instant::now();
        self.scan();
        *last = Some((started, started.elapsed()));
    }

    fn scan(&self) {
        let found = find_sweeps(&self.roots);
        let mut sweeps = self.sweeps.write().unwrap_or_else(|e| e.into_inner());
        for (name, dir) in found {
            if !sweeps.iter().any(|s| s.dir == dir) {
                let name = unique_name(&sweeps, name);
                sweeps.push(Arc::new(LiveSweep::new(name, dir)));
            }
        }
    }

    fn sweep(&self, name: &str) -> Option<Arc<LiveSweep>> {
        self.sweeps.read().unwrap_or_else(|e| e.into_inner()).iter().find(|s| s.name == name).cloned()
    }

    fn all(&self) -> Vec<Arc<LiveSweep>> {
        self.sweeps.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn unique_name(sweeps: &[Arc<LiveSweep>], name: String) -> String {
    let taken = |n: &str| sweeps.iter().any(|s| s.name == n);
    if !taken(&name) {
        return name;
    }
    (2..).map(|i| format!("{name}-{i}")).find(|n| !taken(n)).expect("some suffix is free")
}

/// Sweep directories (those with a `plan.json`) among `roots` and their immediate subfolders.
fn find_sweeps(roots: &[PathBuf]) -> Vec<(String, PathBuf)> {
    let is_sweep = |d: &Path| SweepDir::new(d).plan().is_file();
    let name_of = |d: &Path| d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "sweep".into());
    let mut found = Vec::new();
    for root in roots {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
        if is_sweep(&root) {
            found.push((name_of(&root), root));
            continue;
        }
        found.extend(SweepDir::children(&root).into_iter().map(|d| (name_of(&d), d)));
    }
    found
}

/// Serve until Ctrl-C or SIGTERM. Prints the address it listens on first (a test or a script can
/// read the port of `--bind 127.0.0.1:0` from it).
pub fn serve(options: ServeOptions) -> anyhow::Result<()> {
    for dir in &options.dirs {
        anyhow::ensure!(dir.is_dir(), "{} is not a folder; give sweep directories (results/NAME) or a folder of them (results/)", dir.display());
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}: serve needs to read it (and its sweeps) to show them", dir.display()))?;
    }
    let app = Arc::new(App::new(options.dirs.clone(), options.stall_after));
    app.discover();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {} ({e}); choose another --bind address or port", options.bind))?;
        let address = listener.local_addr()?;
        announce(address, &app.all());
        let router = router(app);
        axum::serve(listener, router).with_graceful_shutdown(shutdown()).await?;
        Ok(())
    })
}

fn announce(address: SocketAddr, sweeps: &[Arc<LiveSweep>]) {
    use std::io::Write;
    let names: Vec<&str> = sweeps.iter().map(|s| s.name.as_str()).collect();
    let shown = if names.is_empty() { "no sweep yet (they appear when they start)".to_string() } else { names.join(", ") };
    println!("serving http://{address}/  ({shown})");
    if address.ip().is_loopback() {
        println!("loopback only: other machines cannot connect (from another machine: ssh -L {0}:localhost:{0} THIS-HOST)", address.port());
    } else {
        println!("listening on {}: anyone who can reach this machine can read these sweeps (read-only, no login)", address.ip());
    }
    std::io::stdout().flush().ok();
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/sweep/{name}", get(sweep_page))
        .route("/api/sweeps", get(api_sweeps))
        .route("/api/sweeps/{name}/progress", get(api_progress))
        .route("/api/sweeps/{name}/curves", get(api_curves))
        .route("/api/sweeps/{name}/runs", get(api_runs))
        .route("/api/sweeps/{name}/fits", get(api_fits))
        .route("/files/{name}/{run}/{file}", get(run_file))
        .fallback(|| async { not_found("no such page") })
        .with_state(app)
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

/// The sweep named `name`, looking for new sweeps under the roots when it is not known yet.
async fn find(app: &Arc<App>, name: &str) -> Option<Arc<LiveSweep>> {
    if let Some(s) = app.sweep(name) {
        return Some(s);
    }
    let a = app.clone();
    tokio::task::spawn_blocking(move || a.discover()).await.ok()?;
    app.sweep(name)
}

/// The sweep, refreshed from its files (at most every 0.75 s; blocking reads off the async threads).
async fn fresh(app: &Arc<App>, name: &str) -> Option<Arc<LiveSweep>> {
    let sweep = find(app, name).await?;
    let s = sweep.clone();
    tokio::task::spawn_blocking(move || s.refresh()).await.ok()?;
    Some(sweep)
}

async fn index(State(app): State<Arc<App>>) -> Html<String> {
    let a = app.clone();
    tokio::task::spawn_blocking(move || a.discover()).await.ok();
    Html(page::index(&app.all()))
}

async fn sweep_page(State(app): State<Arc<App>>, UrlPath(name): UrlPath<String>) -> Response {
    match find(&app, &name).await {
        Some(s) => Html(page::sweep(&s)).into_response(),
        None => not_found(&format!("no sweep named {name}")),
    }
}

async fn api_sweeps(State(app): State<Arc<App>>) -> Json<Vec<live::Progress>> {
    let a = app.clone();
    let progress = tokio::task::spawn_blocking(move || {
        a.discover();
        a.all()
            .iter()
            .map(|s| {
                s.refresh();
                s.progress(a.stall_after)
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    Json(progress)
}

async fn api_progress(State(app): State<Arc<App>>, UrlPath(name): UrlPath<String>) -> Response {
    match fresh(&app, &name).await {
        Some(s) => Json(s.progress(app.stall_after)).into_response(),
        None => not_found(&format!("no sweep named {name}")),
    }
}

#[derive(serde::Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

async fn api_curves(State(app): State<Arc<App>>, UrlPath(name): UrlPath<String>, Query(q): Query<Since>) -> Response {
    match fresh(&app, &name).await {
        Some(s) => Json(s.curves(q.since)).into_response(),
        None => not_found(&format!("no sweep named {name}")),
    }
}

async fn api_runs(State(app): State<Arc<App>>, UrlPath(name): UrlPath<String>) -> Response {
    match fresh(&app, &name).await {
        Some(s) => Json(s.runs()).into_response(),
        None => not_found(&format!("no sweep named {name}")),
    }
}

async fn api_fits(State(app): State<Arc<App>>, UrlPath(name): UrlPath<String>) -> Response {
    match fresh(&app, &name).await {
        Some(s) => Json(s.fits()).into_response(),
        None => not_found(&format!("no sweep named {name}")),
    }
}

/// A run's own file, if the run is in the plan and the file resolves inside the sweep directory.
async fn run_file(State(app): State<Arc<App>>, UrlPath((name, run, file)): UrlPath<(String, String, String)>) -> Response {
    let Some(sweep) = fresh(&app, &name).await else { return not_found(&format!("no sweep named {name}")) };
    if !RUN_FILES.contains(&file.as_str()) || !sweep.has_run(&run) {
        return not_found("no such run file");
    }
    let path = SweepDir::new(&sweep.dir).run(&run).root().join(&file);
    let dir = sweep.dir.clone();
    let read = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, StatusCode> {
        let real = std::fs::canonicalize(&path).map_err(|_| StatusCode::NOT_FOUND)?;
        let root = std::fs::canonicalize(&dir).map_err(|_| StatusCode::NOT_FOUND)?;
        if !real.starts_with(&root) {
            return Err(StatusCode::FORBIDDEN);
        }
        std::fs::read(&real).map_err(|_| StatusCode::NOT_FOUND)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response(),
        Ok(Err(StatusCode::FORBIDDEN)) => (StatusCode::FORBIDDEN, "the file leads out of the sweep directory\n").into_response(),
        _ => not_found("no such run file (not written yet?)"),
    }
}

mod page {
    use super::live::LiveSweep;
    use std::sync::Arc;

    fn escape(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
    }

    const EXTRA_STYLE: &str = ".bar{background:#eee;height:10px;width:100%;max-width:900px;margin:8px 0}.bar div{background:#21918c;height:10px}\
        .bad{color:#b2182b}.charts{display:flex;flex-wrap:wrap;gap:16px}canvas{width:min(880px,95vw);height:440px;border:1px solid #eee}\
        #legend span{margin-right:14px;font-size:13px}#legend i{display:inline-block;width:18px;height:4px;margin-right:5px;vertical-align:middle}\
        table.sortable th{cursor:pointer}tr.diverged td{color:#b2182b}tr.failed td{color:#b2182b}tr.pending td{color:#999}";

    fn head(title: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{}</title><style>{}{EXTRA_STYLE}</style></head>",
            escape(title),
            crate::report::STYLE
        )
    }

    pub fn index(sweeps: &[Arc<LiveSweep>]) -> String {
        let items: String = sweeps
            .iter()
            .map(|s| {
                format!(
                    "<li><a href=\"/sweep/{}\">{}</a> <span class=muted>{}</span></li>",
                    crate::serve::percent_encode(&s.name),
                    escape(&s.name),
                    escape(&s.dir.display().to_string())
                )
            })
            .collect();
        let list = if items.is_empty() {
            "<p class=muted>No sweep here yet; they appear when `windtunnel run` starts one.</p>".to_string()
        } else {
            format!("<ul>{items}</ul>")
        };
        format!(
            "{}<body><h1>windtunnel: sweeps</h1>{list}<p class=muted>windtunnel {} · read-only</p></body></html>\n",
            head("windtunnel sweeps"),
            env!("CARGO_PKG_VERSION")
        )
    }

    pub fn sweep(s: &LiveSweep) -> String {
        format!(
            "{}<body data-sweep=\"{name}\"><p><a href=\"/\">all sweeps</a></p><h1>Wind tunnel <code>{name}</code> <span class=muted>live</span></h1>\
             <p class=muted>{dir}</p><div id=progress>loading…</div><div id=active></div>\
             <h2>Loss curves <select id=which><option value=eval>eval loss</option><option value=train>train loss</option></select> \
             <span id=curve-count class=muted></span></h2><div id=legend></div>\
             <div class=charts><canvas id=by-tokens></canvas><canvas id=by-flops></canvas></div>\
             <h2>Fits <span id=fits-note class=muted></span></h2><div id=fits></div>\
             <h2>Runs</h2><div id=runs></div><script>{}</script></body></html>\n",
            head(&format!("windtunnel: {}", s.name)),
            include_str!("page.js"),
            name = escape(&s.name),
            dir = escape(&s.dir.display().to_string()),
        )
    }
}

/// A path segment with everything but unreserved characters (RFC 3986) percent-encoded, so a
/// sweep named `lr#1 50%?x` links to itself.
fn percent_encode(segment: &str) -> String {
    segment.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request between scans does not list the roots again: a root with 100,000 files would
    /// cost every request its scan.
    #[test]
    fn the_roots_are_scanned_at_most_once_a_second() {
        let root = tempfile::tempdir().unwrap();
        let app = App::new(vec![root.path().to_path_buf()], Duration::from_secs(60));
        app.discover();
        let sweep = root.path().join("new");
        std::fs::create_dir_all(&sweep).unwrap();
        std::fs::write(sweep.join("plan.json"), "{}").unwrap();
        app.discover();
        assert!(app.all().is_empty(), "the second request within a second used the first scan");
        *app.last_scan.lock().unwrap() = Some((Instant::now() - RESCAN_EVERY, Duration::ZERO));
        app.discover();
        assert_eq!(app.all().len(), 1, "a later request finds the new sweep");
    }

    /// The index links a sweep with any name to its own page (axum decodes the segment back).
    #[test]
    fn sweep_names_are_percent_encoded_in_links() {
        assert_eq!(super::percent_encode("lr#1 50%?x"), "lr%231%2050%25%3Fx");
        assert_eq!(super::percent_encode("quickstart-2.v1_a~"), "quickstart-2.v1_a~");
        assert_eq!(super::percent_encode("µP"), "%C2%B5P");
    }
}
