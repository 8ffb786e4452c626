//! What a benchmark section reports: rows of a figure next to its baseline from the same
//! run, printed as a Markdown table and collected into the JSON file.

use serde::Serialize;

/// One measured figure and the baseline it is compared with.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// What was measured, e.g. "peerdoc engine, N=10000".
    pub(crate) subject: String,
    /// Which quantity, e.g. "messages".
    pub(crate) metric: String,
    /// Its unit, e.g. "ms", "B", "docs/s".
    pub(crate) unit: String,
    /// The figure (`None` when it could not be measured; `note` says why).
    pub(crate) value: Option<f64>,
    /// What it is compared with, measured in the same run.
    pub(crate) baseline: String,
    /// The baseline's figure.
    pub(crate) baseline_value: Option<f64>,
    /// `value / baseline_value`.
    pub(crate) ratio: Option<f64>,
    /// The target from the issue, in words, if there is one.
    pub(crate) target: Option<String>,
    /// Whether the target was met (`None` when there is no target or no figure).
    pub(crate) met: Option<bool>,
}

impl Row {
    /// A row; `ratio` is computed from the two figures.
    pub(crate) fn new(
        subject: impl Into<String>,
        metric: impl Into<String>,
        unit: impl Into<String>,
        value: Option<f64>,
        baseline: impl Into<String>,
        baseline_value: Option<f64>,
    ) -> Self {
        let ratio = match (value, baseline_value) {
            (Some(v), Some(b)) if b != 0.0 => Some(v / b),
            _ => None,
        };
        Self {
            subject: subject.into(),
            metric: metric.into(),
            unit: unit.into(),
            value,
            baseline: baseline.into(),
            baseline_value,
            ratio,
            target: None,
            met: None,
        }
    }

    /// Attaches a target: `at_most` (lower is better) or at least (higher is better).
    pub(crate) fn target(mut self, text: impl Into<String>, check: Target) -> Self {
        self.target = Some(text.into());
        self.met = self.value.map(|v| match check {
            Target::AtMost(limit) => v <= limit,
            Target::AtLeast(limit) => v >= limit,
            Target::RatioAtMost(limit) => self.ratio.is_some_and(|r| r <= limit),
        });
        self
    }
}

/// How a row's target is checked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// The figure is at most this.
    AtMost(f64),
    /// The figure is at least this.
    AtLeast(f64),
    /// The figure divided by its baseline is at most this.
    RatioAtMost(f64),
}

/// One numbered item of the benchmark issue.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Section {
    /// Stable key in the JSON file, e.g. "reconnect".
    pub(crate) id: &'static str,
    /// Heading printed above the table.
    pub(crate) title: String,
    /// Figures.
    pub(crate) rows: Vec<Row>,
    /// Caps, caveats and what each baseline is.
    pub(crate) notes: Vec<String>,
    /// Wall time the section took, in seconds.
    pub(crate) seconds: f64,
}

impl Section {
    /// An empty section.
    pub(crate) fn new(id: &'static str, title: impl Into<String>) -> Self {
        Self {
            id,
            title: title.into(),
            rows: Vec::new(),
            notes: Vec::new(),
            seconds: 0.0,
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Adds a note.
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The section as Markdown: a heading, a table and its notes.
    pub(crate) fn markdown(&self) -> String {
        let mut out = format!("### {} ({:.1} s)\n\n", self.title, self.seconds);
        out.push_str(
            "| subject | metric | value | baseline | baseline value | ratio | target | met |\n",
        );
        out.push_str("|---|---|---:|---|---:|---:|---|---|\n");
        for row in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                row.subject,
                row.metric,
                figure(row.value, &row.unit),
                row.baseline,
                figure(row.baseline_value, &row.unit),
                row.ratio.map_or("–".into(), |r| format!("{r:.2}x")),
                row.target.as_deref().unwrap_or(""),
                match row.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                },
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("\n- {note}"));
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// A figure with its unit, rounded for reading.
fn figure(value: Option<f64>, unit: &str) -> String {
    match value {
        None => "–".into(),
        Some(v) if v.abs() >= 100.0 || v.fract() == 0.0 => format!("{v:.0} {unit}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2} {unit}"),
        Some(v) => format!("{v:.3} {unit}"),
    }
}

/// The whole run, as written to the JSON file.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// Whether `--quick` shrank every N.
    pub(crate) quick: bool,
    /// What the machine is (CPU model, cores, kernel).
    pub(crate) machine: Machine,
    /// The command line.
    pub(crate) command: String,
    /// Every section, keyed by its id, in run order.
    pub(crate) sections: serde_json::Map<String, serde_json::Value>,
}

/// The machine the run happened on.
#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    /// `model name` from `/proc/cpuinfo`.
    pub(crate) cpu: String,
    /// `std::thread::available_parallelism`.
    pub(crate) cores: usize,
    /// `/proc/sys/kernel/osrelease`.
    pub(crate) kernel: String,
}

impl Machine {
    /// Reads what Linux tells about this machine; "unknown" where it does not.
    pub(crate) fn detect() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
        }
    }
}
