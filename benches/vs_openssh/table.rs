//! The result table: one row per workload, pgtunnel and `ssh -J` (or a baseline build) side
//! by side, the ratio pgtunnel / ssh, which direction is better, the target and
//! whether it is met (no targets against a baseline build).
//! Printed as text, and as Markdown to `BENCH_MARKDOWN` if set.

/// Which way a metric is better.
#[derive(Clone, Copy)]
pub enum Better {
    Higher,
    Lower,
}

pub struct Row {
    pub workload: String,
    pub metric: String,
    pub pgtunnel: f64,
    pub ssh: f64,
    pub better: Better,
    /// The target for pgtunnel / ssh, if it sets one.
    pub target: Option<f64>,
    /// Decimals to show the values with.
    pub decimals: usize,
}

impl Row {
    pub fn new(workload: &str, metric: &str, values: (f64, f64), better: Better) -> Row {
        Row {
            workload: workload.into(),
            metric: metric.into(),
            pgtunnel: values.0,
            ssh: values.1,
            better,
            target: None,
            decimals: 1,
        }
    }

    pub fn target(mut self, target: f64) -> Row {
        self.target = Some(target);
        self
    }

    pub fn decimals(mut self, decimals: usize) -> Row {
        self.decimals = decimals;
        self
    }

    fn ratio(&self) -> f64 {
        self.pgtunnel / self.ssh
    }

    fn cells(&self, versus: Versus) -> [String; 8] {
        let d = self.decimals;
        let (better, op) = match self.better {
            Better::Higher => ("higher", "≥"),
            Better::Lower => ("lower", "≤"),
        };
        let ratio = self.ratio();
        let target = self.target.filter(|_| versus == Versus::Ssh);
        let (target, met) = match target {
            None => ("—".to_string(), "—".to_string()),
            Some(t) => {
                let met = match self.better {
                    Better::Higher => ratio >= t,
                    Better::Lower => ratio <= t,
                };
                (
                    format!("{op} {}x", target_text(t)),
                    if met { "yes" } else { "no" }.into(),
                )
            }
        };
        [
            self.workload.clone(),
            self.metric.clone(),
            format!("{:.d$}", self.pgtunnel),
            format!("{:.d$}", self.ssh),
            if ratio.is_finite() {
                format!("{ratio:.2}x")
            } else {
                "—".into()
            },
            better.into(),
            target,
            met,
        ]
    }
}

/// 1.0 as "1.0", 0.35 as "0.35".
fn target_text(t: f64) -> String {
    if (t * 10.0).fract().abs() < 1e-9 {
        format!("{t:.1}")
    } else {
        format!("{t:.2}")
    }
}

/// What the second column is: `ssh -J` (issue 13's targets apply), or another build of
/// pgtunnel (an A/B, which has no targets).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Versus {
    Ssh,
    Baseline,
}

impl Versus {
    /// The second column's name.
    pub fn name(self) -> &'static str {
        match self {
            Versus::Ssh => "ssh -J",
            Versus::Baseline => "baseline",
        }
    }

    /// The note under the table that reads its ratio column.
    #[allow(dead_code)] // the WAN bench, which shares this file, writes its own note
    pub fn note(self) -> &'static str {
        match self {
            Versus::Ssh => {
                "pgtunnel/ssh: pgtunnel's median over ssh's; \"better\" says which way is \
                 better; targets are issue 13's"
            }
            Versus::Baseline => {
                "pgtunnel/baseline: pgtunnel's median over the baseline's; \"better\" says \
                 which way is better"
            }
        }
    }

    fn header(self) -> [String; 8] {
        let ratio = match self {
            Versus::Ssh => "pgtunnel/ssh",
            Versus::Baseline => "pgtunnel/baseline",
        };
        [
            "workload",
            "metric",
            "pgtunnel",
            self.name(),
            ratio,
            "better",
            "target",
            "met",
        ]
        .map(String::from)
    }
}

/// The table as aligned text.
pub fn text(rows: &[Row], versus: Versus) -> String {
    let cells: Vec<[String; 8]> = rows.iter().map(|r| r.cells(versus)).collect();
    let header = versus.header();
    let mut width = header.each_ref().map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String]| {
        let mut out = String::new();
        for (i, (c, w)) in row.iter().zip(width).enumerate() {
            let pad = w - c.chars().count();
            // Text left-aligned, numbers right-aligned.
            if i < 2 {
                out.push_str(c);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            }
            out.push_str("  ");
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    out.push_str(&"-".repeat(width.iter().sum::<usize>() + 2 * (width.len() - 1)));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
    }
    out
}

/// The table as Markdown, after `heading` lines (machine, rounds), `notes` below it.
pub fn markdown(heading: &[String], rows: &[Row], notes: &[String], versus: Versus) -> String {
    let mut out = String::new();
    for h in heading {
        out.push_str(h);
        out.push_str("  \n");
    }
    out.push('\n');
    out.push_str(&format!("| {} |\n", versus.header().join(" | ")));
    out.push_str("|---|---|---:|---:|---:|---|---|---|\n");
    for row in rows {
        out.push_str(&format!("| {} |\n", row.cells(versus).join(" | ")));
    }
    out.push('\n');
    for n in notes {
        out.push_str(&format!("{n}.  \n"));
    }
    out
}
