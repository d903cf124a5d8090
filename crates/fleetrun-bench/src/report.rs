//! The Markdown report: one table of ListCommands latencies (with moto's column and the speed-up)
//! and one table of everything else, each figure next to its target. Smoke runs never judge targets.

use std::fmt::Write as _;
use std::time::Duration;

use crate::dispatch::IdleRss;
use crate::fanout::Fanout;
use crate::list::{CaseResult, Walk, FLOOR_CASE};
use crate::moto::Moto;
use crate::seed::Seeded;
use crate::stores::Backend;
use crate::util::{ms, Dist};

/// One fleetrun ListCommands run at one N on one store.
pub struct ListRun {
    pub backend: Backend,
    pub seeded: Seeded,
    pub cases: Vec<CaseResult>,
    pub walk: Walk,
    /// The same walk against a server replaying recorded answers: the most any server could reach.
    pub ceiling: Walk,
}

/// Everything measured in one run.
#[derive(Default)]
pub struct Results {
    pub smoke: bool,
    pub lists: Vec<ListRun>,
    pub dispatch: Option<Dist>,
    /// PostgreSQL: SendCommand on one replica → process start of an agent polling another.
    pub cross_replica_dispatch: Option<Dist>,
    pub fanouts: Vec<Fanout>,
    pub idle: Vec<IdleRss>,
    pub moto: Option<Moto>,
    pub failures: Vec<String>,
}

const MB: f64 = 1024.0 * 1024.0;

fn verdict(smoke: bool, ok: bool) -> &'static str {
    match (smoke, ok) {
        (true, _) => "(smoke: not judged)",
        (false, true) => "met",
        (false, false) => "**missed**",
    }
}

fn n_label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// The first-page targets at 1M (p50, p99) and walk target (commands/s), per store.
fn list_targets(backend: Backend) -> (Duration, Duration, f64) {
    match backend {
        Backend::Sqlite => (Duration::from_millis(1), Duration::from_millis(5), 50_000.0),
        Backend::Postgres => (
            Duration::from_millis(2),
            Duration::from_millis(10),
            30_000.0,
        ),
    }
}

/// The fan-out targets: all terminal within, and (SQLite) the server's peak RSS at most, in MB.
fn fanout_targets(backend: Backend) -> (Duration, Option<f64>) {
    match backend {
        Backend::Sqlite => (Duration::from_secs(1), Some(150.0)),
        Backend::Postgres => (Duration::from_secs(3), None),
    }
}

fn speedup(fleetrun: Duration, moto: Duration) -> f64 {
    moto.as_secs_f64() / fleetrun.as_secs_f64().max(1e-9)
}

impl Results {
    /// The smallest moto/fleetrun p50 ratio over the cases at moto's N, if both ran.
    fn worst_speedup(&self) -> Option<(f64, String)> {
        let moto = self.moto.as_ref()?;
        let run = self
            .lists
            .iter()
            .find(|r| r.backend == Backend::Sqlite && r.seeded.commands == moto.commands)?;
        run.cases
            .iter()
            .filter(|c| c.name != FLOOR_CASE)
            .filter_map(|c| {
                let m = moto.cases.iter().find(|m| m.name == c.name)?;
                Some((speedup(c.dist.p50(), m.dist.p50()), c.name.clone()))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// For `case`: moto's p50 ÷ fleetrun's floor at the same N, with both figures. No server behind
    /// the same client and loopback can beat the floor, so no speed-up can exceed this.
    fn speedup_bound(&self, case: &str) -> Option<(f64, Duration, Duration)> {
        let moto = self.moto.as_ref()?;
        let run = self
            .lists
            .iter()
            .find(|r| r.backend == Backend::Sqlite && r.seeded.commands == moto.commands)?;
        let floor = run.cases.iter().find(|c| c.name == FLOOR_CASE)?.dist.p50();
        let moto_p50 = moto.cases.iter().find(|m| m.name == case)?.dist.p50();
        Some((speedup(floor, moto_p50), floor, moto_p50))
    }

    pub fn markdown(&self, title: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## {title}\n");
        let _ = writeln!(
            s,
            "### ListCommands, first page (MaxResults 50), aws-sdk-ssm over loopback HTTP\n"
        );
        let _ = writeln!(
            s,
            "| query | store | N | rows | p50 ms | p99 ms | CPU µs/request: client / server / store | moto p50 ms | speed-up vs moto | target at 1M (SQLite: p50 ≤ 1 ms, p99 ≤ 5 ms; PostgreSQL: p50 ≤ 2 ms, p99 ≤ 10 ms) |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for run in &self.lists {
            let n = run.seeded.commands;
            let (p50_target, p99_target, _) = list_targets(run.backend);
            let moto = self
                .moto
                .as_ref()
                .filter(|m| m.commands == n && run.backend == Backend::Sqlite);
            for c in &run.cases {
                let m = moto.and_then(|m| m.cases.iter().find(|x| x.name == c.name));
                let (mp50, ratio) = match m {
                    Some(m) => (
                        ms(m.dist.p50()),
                        format!("{:.0}×", speedup(c.dist.p50(), m.dist.p50())),
                    ),
                    None => (String::new(), String::new()),
                };
                let target = if n >= 1_000_000 {
                    let ok = c.dist.p50() <= p50_target && c.dist.p99() <= p99_target;
                    verdict(self.smoke, ok)
                } else {
                    ""
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {:.0} / {:.0} / {:.0} | {mp50} | {ratio} | {target} |",
                    c.name,
                    run.backend.label(),
                    n_label(n),
                    c.rows,
                    ms(c.dist.p50()),
                    ms(c.dist.p99()),
                    c.cpu.client.as_secs_f64() * 1e6,
                    c.cpu.server.as_secs_f64() * 1e6,
                    c.cpu.store.as_secs_f64() * 1e6,
                );
            }
        }
        if let Some(m) = &self.moto {
            let _ = writeln!(
                s,
                "\nSamples per case: fleetrun {}, moto {} (moto answers every command on every call).",
                self.lists
                    .first()
                    .and_then(|r| r.cases.first())
                    .map_or(0, |c| c.dist.len()),
                m.cases.first().map_or(0, |c| c.dist.len())
            );
        }

        let _ = writeln!(s, "\n### Throughput, dispatch, fan-out, footprint\n");
        let _ = writeln!(s, "| measurement | result | target | |");
        let _ = writeln!(s, "|---|---|---|---|");
        for run in &self.lists {
            let d = &run.seeded;
            let _ = writeln!(
                s,
                "| {}: seed {} commands (store API, not timed against a target) | {:.1} s; {} invocations; {:.0} MB on disk | — | |",
                run.backend.label(),
                n_label(d.commands),
                d.seconds,
                d.invocations,
                d.db_bytes as f64 / MB
            );
        }
        for run in &self.lists {
            let w = &run.walk;
            let (_, _, walk_target) = list_targets(run.backend);
            let _ = writeln!(
                s,
                "| {}: full pagination walk, {} commands ({} pages of 50) | {:.0} commands/s ({:.2} s) | ≥ {walk_target:.0}/s | {} |",
                run.backend.label(),
                n_label(run.seeded.commands),
                w.pages,
                w.per_second(),
                w.elapsed.as_secs_f64(),
                verdict(self.smoke, w.per_second() >= walk_target)
            );
        }
        for run in &self.lists {
            let c = &run.ceiling;
            let _ = writeln!(
                s,
                "| {}: walk ceiling at {}: the same client against a server that replays fleetrun's recorded answers from memory ({} pages; no SQL, no encoding) | {:.0} commands/s | — | |",
                run.backend.label(),
                n_label(run.seeded.commands),
                c.pages,
                c.per_second(),
            );
        }
        if let Some(m) = &self.moto {
            let _ = writeln!(
                s,
                "| moto: full pagination walk, {} commands ({} page) | {:.0} commands/s ({:.2} s) | — | |",
                n_label(m.commands),
                m.walk.pages,
                m.walk.per_second(),
                m.walk.elapsed.as_secs_f64()
            );
            let _ = writeln!(
                s,
                "| moto: seeding {} commands through its SendCommand | {:.1} s ({:.0} commands/s) | — | |",
                n_label(m.commands),
                m.seed_time.as_secs_f64(),
                m.commands as f64 / m.seed_time.as_secs_f64().max(1e-9)
            );
        }
        if let Some((ratio, case)) = self.worst_speedup() {
            let _ = writeln!(
                s,
                "| smallest speed-up vs moto, first page p50 at {} ({case}) | {ratio:.0}× | ≥ 1000× | {} |",
                self.moto.as_ref().map_or(String::new(), |m| n_label(m.commands)),
                verdict(self.smoke, ratio >= 1000.0)
            );
            if let Some((bound, floor, moto_p50)) = self.speedup_bound(&case) {
                let _ = writeln!(
                    s,
                    "| the most any server could reach for {case}: moto's p50 ({moto_p50} ms) ÷ fleetrun's per-request floor ({floor} ms, \"{FLOOR_CASE}\", same client and loopback) | {bound:.0}× | — | |",
                    floor = ms(floor),
                    moto_p50 = ms(moto_p50),
                );
            }
        }
        if let Some(d) = &self.dispatch {
            let _ = writeln!(
                s,
                "| SQLite: SendCommand → agent process start, real agent ({} runs) | p50 {} ms, p99 {} ms | p50 ≤ 10 ms | {} |",
                d.len(),
                ms(d.p50()),
                ms(d.p99()),
                verdict(self.smoke, d.p50() <= Duration::from_millis(10))
            );
        }
        if let Some(d) = &self.cross_replica_dispatch {
            let _ = writeln!(
                s,
                "| PostgreSQL: SendCommand on replica A → process start of a real agent polling replica B ({} runs) | p50 {} ms, p99 {} ms | p50 ≤ 15 ms | {} |",
                d.len(),
                ms(d.p50()),
                ms(d.p99()),
                verdict(self.smoke, d.p50() <= Duration::from_millis(15))
            );
        }
        for f in &self.fanouts {
            let (time_target, rss_target) = fanout_targets(f.backend);
            let over = if f.replicas > 1 {
                format!(" split over {} replicas", f.replicas)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "| {}: fan-out to {} nodes{over} (**agent simulator**, real HTTP), all terminal — {} | {:.2} s | ≤ {} s | {} |",
                f.backend.label(),
                f.nodes,
                f.how,
                f.all_terminal.as_secs_f64(),
                time_target.as_secs(),
                verdict(self.smoke, f.all_terminal <= time_target)
            );
            for (i, (peak, hwm)) in f.peak_rss_fanout.iter().zip(&f.hwm).enumerate() {
                let which = if f.replicas > 1 {
                    format!("replica {} ", i + 1)
                } else {
                    "server ".into()
                };
                let (target, judged) = match rss_target {
                    Some(mb) => (
                        format!("≤ {mb:.0} MB"),
                        verdict(self.smoke, *hwm as f64 <= mb * MB),
                    ),
                    None => ("—".into(), ""),
                };
                let _ = writeln!(
                    s,
                    "| {}: {which}peak RSS during the fan-out (VmHWM over its life: {:.0} MB) | {:.0} MB | {target} | {judged} |",
                    f.backend.label(),
                    *hwm as f64 / MB,
                    *peak as f64 / MB,
                );
            }
            let _ = writeln!(
                s,
                "| {}: registering the {} simulated nodes (setup, not timed against a target) | {:.1} s | — | |",
                f.backend.label(),
                f.nodes,
                f.register.as_secs_f64()
            );
        }
        for r in &self.idle {
            let _ = writeln!(
                s,
                "| agent idle RSS: `{}` (binary {:.1} MB; VmHWM {:.1} MB) | {:.1} MB | ≤ 5 MB | {} |",
                r.binary,
                r.file_bytes as f64 / MB,
                r.hwm as f64 / MB,
                r.rss as f64 / MB,
                verdict(self.smoke, r.rss as f64 <= 5.0 * MB)
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "\n### Failed measurements\n");
            for f in &self.failures {
                let _ = writeln!(s, "- {f}");
            }
        }
        s
    }
}
