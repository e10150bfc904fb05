//! The quickstart's science through the real binary: on its synthetic language, a data-model
//! grid smaller than the quickstart's (cheap enough for a test) fits a law whose E brackets the
//! language's exact loss floor.

mod common;
use common::{json, windtunnel};

use std::path::Path;

/// `sweeps/quickstart.toml` with only its data-model grid, shrunk to 3 sizes and 4 decays to
/// 196k tokens (about 15 s on 2 cores). The language, optimizer and training settings are the
/// shipped file's, so a change to the quickstart's language is checked here.
fn small_quickstart() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/quickstart.toml");
    let mut sweep: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    let grids = sweep["grid"].as_array_mut().unwrap();
    grids.retain(|g| g["name"].as_str() == Some("data-model"));
    let grid = grids[0].as_table_mut().unwrap();
    grid["models"].as_table_mut().unwrap()["widths"] = toml::Value::Array(vec![8.into(), 16.into(), 32.into()]);
    let branches = [24576, 49152, 98304, 196608].map(toml::Value::from).to_vec();
    grid["wsd"].as_table_mut().unwrap()["branch_tokens"] = toml::Value::Array(branches);
    sweep["name"] = "quickstart-small".into();
    toml::to_string(&sweep).unwrap()
}

#[test]
fn the_quickstart_language_pins_e_at_its_oracle_loss() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("small.toml");
    std::fs::write(&file, small_quickstart()).unwrap();
    let out = dir.path().join("results");
    let o = windtunnel(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--parallel", "2", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sweep = out.join("quickstart-small");
    let table = std::fs::read_to_string(sweep.join("table.csv")).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "oracle_loss").unwrap();
    let oracle: f64 = table.lines().nth(1).unwrap().split(',').nth(column).unwrap().parse().unwrap();

    let r = json(&["fit", "law", "--input", sweep.to_str().unwrap(), "--bootstrap", "200", "--json"]);
    assert_eq!(r["points"], 12);
    assert_eq!(r["plausible"], true, "{r}");
    let e = &r["bootstrap"]["e"];
    let (lower, upper) = (e["lower"].as_f64().unwrap(), e["upper"].as_f64().unwrap());
    assert!(lower <= oracle && oracle <= upper, "E's 95% interval [{lower}, {upper}] misses the oracle loss {oracle}");
    assert!(upper - lower < 0.2 * oracle, "E's 95% interval [{lower}, {upper}] is wider than ±10% of the oracle {oracle}");
}
