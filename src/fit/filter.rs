//! Row filters for `fit law --where EXPR` and `--predict-where EXPR`: comparisons on a table's
//! columns joined by `and`, e.g. `non_embedding_params < 1e6 and grid == data-model`.
//!
//! A comparison is `COLUMN OP VALUE` with OP one of `<`, `<=`, `>`, `>=`, `==`, `!=`. Numbers
//! compare as numbers; anything else compares as text, and only with `==` or `!=`.

use serde::{Deserialize, Serialize};

use super::observation::{Observations, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Comparison {
    column: String,
    op: Op,
    value: String,
}

/// A conjunction of comparisons, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub expression: String,
    comparisons: Vec<Comparison>,
}

impl std::str::FromStr for Filter {
    type Err = String;

    fn from_str(expression: &str) -> Result<Self, String> {
        let comparisons = expression
            .split(" and ")
            .map(|part| {
                let part = part.trim();
                // Two-character operators first, so `<=` is not read as `<`.
                let ops = [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("!=", Op::Ne), ("<", Op::Lt), (">", Op::Gt)];
                let (at, symbol, op) = ops
                    .iter()
                    .filter_map(|&(symbol, op)| part.find(symbol).map(|at| (at, symbol, op)))
                    .min_by_key(|&(at, symbol, _)| (at, std::cmp::Reverse(symbol.len())))
                    .ok_or_else(|| format!("`{part}` in `{expression}`: write COLUMN OP VALUE with OP one of < <= > >= == !="))?;
                let (column, value) = (part[..at].trim(), part[at + symbol.len()..].trim().trim_matches(['"', '\'']));
                if column.is_empty() || value.is_empty() {
                    return Err(format!("`{part}` in `{expression}`: a column and a value are needed on either side of `{symbol}`"));
                }
                if value.parse::<f64>().is_err() && !matches!(op, Op::Eq | Op::Ne) {
                    return Err(format!("`{part}` in `{expression}`: `{value}` is not a number; text compares only with == or !="));
                }
                Ok(Comparison { column: column.to_string(), op, value: value.to_string() })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { expression: expression.to_string(), comparisons })
    }
}

impl Filter {
    /// `expr` as given with `flag` (`--where`, `--predict-where`), its parse error naming the flag.
    pub fn parse_flag(flag: &str, expr: &str) -> anyhow::Result<Self> {
        expr.parse().map_err(|m| anyhow::anyhow!("{flag}: {m}"))
    }

    /// The rows of `table` that `expr` (given with `flag`) keeps, `None` without a filter; a filter
    /// that keeps no row is an error.
    pub fn rows_where(flag: &str, expr: Option<&str>, table: &Observations) -> anyhow::Result<Option<Vec<bool>>> {
        let Some(expr) = expr else { return Ok(None) };
        let keep = Self::parse_flag(flag, expr)?.rows(table)?;
        anyhow::ensure!(keep.iter().any(|&k| k), "{flag} `{expr}`: no row of {} matches", table.source.display());
        Ok(Some(keep))
    }

    /// The rows of `table` the filter keeps; an unknown column is an error naming the columns.
    pub fn rows(&self, table: &Observations) -> anyhow::Result<Vec<bool>> {
        let mut keep = vec![true; table.rows.len()];
        for c in &self.comparisons {
            let Some(col) = table.columns.iter().position(|name| *name == c.column) else {
                anyhow::bail!("`{}`: {} has no column `{}`; it has {}", self.expression, table.source.display(), c.column, table.columns.join(", "))
            };
            for (k, row) in keep.iter_mut().zip(&table.rows) {
                *k &= c.holds(&row.values[col]);
            }
        }
        Ok(keep)
    }
}

impl Comparison {
    fn holds(&self, cell: &Value) -> bool {
        let number = match cell {
            Value::Missing => None,
            number_or_text => number_or_text.number(),
        };
        match (number, self.value.parse::<f64>()) {
            (Some(x), Ok(v)) => match self.op {
                Op::Lt => x < v,
                Op::Le => x <= v,
                Op::Gt => x > v,
                Op::Ge => x >= v,
                Op::Eq => x == v,
                Op::Ne => x != v,
            },
            _ => match self.op {
                Op::Eq => cell.to_string() == self.value,
                Op::Ne => cell.to_string() != self.value,
                // A number compared with text: never true.
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Observations {
        let rows = [["1e6", "data", "done"], ["4e6", "data", "done"], ["1.6e7", "lr", "done"]];
        let rows = rows.iter().enumerate().map(|(i, r)| (i + 2, r.iter().map(|c| Value::of_cell(c)).collect())).collect();
        Observations::new(std::path::Path::new("t.csv"), vec!["N".into(), "grid".into(), "status".into()], rows).unwrap()
    }

    #[test]
    fn comparisons_on_numbers_and_text_joined_by_and() {
        let keep = |e: &str| e.parse::<Filter>().unwrap().rows(&table()).unwrap();
        assert_eq!(keep("N < 4e6"), [true, false, false]);
        assert_eq!(keep("N <= 4e6 and grid == data"), [true, true, false]);
        assert_eq!(keep("grid != 'data'"), [false, false, true]);
        assert_eq!(keep("N>=4000000"), [false, true, true]);
    }

    #[test]
    fn bad_expressions_say_how_to_write_them() {
        assert!("N ~ 3".parse::<Filter>().unwrap_err().contains("COLUMN OP VALUE"));
        assert!("grid < data".parse::<Filter>().unwrap_err().contains("text compares only with == or !="));
        assert!("< 3".parse::<Filter>().unwrap_err().contains("a column and a value"));
        let e = "params < 3".parse::<Filter>().unwrap().rows(&table()).unwrap_err().to_string();
        assert!(e.contains("no column `params`") && e.contains("N, grid, status"), "{e}");
    }
}
