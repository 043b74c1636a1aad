//! Output mapping: how a result field is read from a model's outputs.
//! `probabilities[1]` (a column), `variable` (a single-column output),
//! `argmax(probabilities)` (a label computed from probabilities, because a
//! model's own `label` output cannot be trusted across runtimes).

use std::str::FromStr;

use super::Output;

#[derive(Debug, Clone, PartialEq)]
pub enum OutputExpr {
    /// The only column of an output shaped `[N]` or `[N, 1]`.
    Whole(String),
    /// Column `i` of a `[N, K]` output.
    Column(String, usize),
    /// Index of the largest column of a `[N, K]` output.
    Argmax(String),
}

impl OutputExpr {
    pub fn tensor(&self) -> &str {
        match self {
            OutputExpr::Whole(n) | OutputExpr::Column(n, _) | OutputExpr::Argmax(n) => n,
        }
    }

    /// The value for batch row `row`; `None` when the expression does not
    /// fit the output's shape.
    pub fn eval(&self, out: &Output, row: usize) -> Option<f64> {
        let width = out.width();
        let cells = out.data.get(row * width..(row + 1) * width)?;
        match self {
            OutputExpr::Whole(_) if width == 1 => Some(cells[0] as f64),
            OutputExpr::Whole(_) => None,
            OutputExpr::Column(_, i) => cells.get(*i).map(|v| *v as f64),
            OutputExpr::Argmax(_) => {
                let mut best = 0;
                for (i, v) in cells.iter().enumerate() {
                    if *v > cells[best] {
                        best = i;
                    }
                }
                (!cells.is_empty()).then_some(best as f64)
            }
        }
    }

    /// Whether the value is an integer label rather than a score.
    pub fn is_label(&self) -> bool {
        matches!(self, OutputExpr::Argmax(_))
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b':')
}

impl FromStr for OutputExpr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("expected `output`, `output[i]` or `argmax(output)`, got `{s}`");
        if let Some(inner) = s.strip_prefix("argmax(").and_then(|r| r.strip_suffix(')')) {
            return if is_name(inner) { Ok(OutputExpr::Argmax(inner.into())) } else { Err(bad()) };
        }
        if let Some((name, rest)) = s.split_once('[') {
            let idx = rest.strip_suffix(']').and_then(|i| i.trim().parse::<usize>().ok()).ok_or_else(bad)?;
            return if is_name(name) { Ok(OutputExpr::Column(name.into(), idx)) } else { Err(bad()) };
        }
        if is_name(s) {
            Ok(OutputExpr::Whole(s.into()))
        } else {
            Err(bad())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_evaluates() {
        let out = Output { name: "p".into(), shape: vec![2, 2], data: vec![0.2, 0.8, 0.9, 0.1] };
        let col: OutputExpr = "p[1]".parse().unwrap();
        assert_eq!(col.eval(&out, 0), Some(0.800000011920929));
        let am: OutputExpr = "argmax(p)".parse().unwrap();
        assert_eq!(am.eval(&out, 1), Some(0.0));
        assert!("p[x]".parse::<OutputExpr>().is_err());
        assert_eq!("p".parse::<OutputExpr>().unwrap().eval(&out, 0), None);
    }
}
